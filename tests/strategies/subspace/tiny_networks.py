"""Tiny networks for the subspace tests: an MLP and a BERT classifier, their inputs, and a few steps of training."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn

from loralab.strategies.subspace.projections import Projection


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and on a shared CPU two OpenMP threads waiting on each
    # other made these tests ~100x slower. Restored afterwards for other test modules.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Per-projection settings: said spends one of d on each weight tensor, so it needs a larger d.
DIMS = {Projection.DENSE: 24, Projection.SPARSE: 24, Projection.FASTFOOD: 24, Projection.SAID: 64}


def mlp(width: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))


def bert(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100, num_labels=3
    )
    return transformers.BertForSequenceClassification(config).eval()


def mlp_batch() -> dict:
    return {"input": torch.randn(5, 12, generator=torch.Generator().manual_seed(1))}


def bert_batch() -> dict:
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(0, 100, (4, 7), generator=g), "attention_mask": torch.ones(4, 7, dtype=torch.long)}


def outputs(model: nn.Module, batch: dict) -> torch.Tensor:
    out = model(**batch)
    return out if isinstance(out, torch.Tensor) else out.logits


MODELS = {"mlp": (mlp, mlp_batch, ("4",)), "bert": (bert, bert_batch, ("classifier",))}


def train_a_little(model: nn.Module, inputs: dict, steps: int = 3) -> None:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        outputs(model, inputs).square().mean().backward()
        optimizer.step()
