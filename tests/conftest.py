"""Shared fixtures: tiny in-process transformers of each supported architecture, and real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCIENCE = DATA / "science-exam"

_SIZES = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=100)

# model_type -> (config class, model class, config overrides): tiny versions of every architecture
# in loralab's table that has a multiple-choice head.
TINY = {
    "bert": (transformers.BertConfig, transformers.BertForMultipleChoice, dict(num_hidden_layers=2)),
    "roberta": (transformers.RobertaConfig, transformers.RobertaForMultipleChoice, dict(num_hidden_layers=2)),
    "mpnet": (transformers.MPNetConfig, transformers.MPNetForMultipleChoice, dict(num_hidden_layers=2)),
    "deberta-v2": (transformers.DebertaV2Config, transformers.DebertaV2ForMultipleChoice,
                   dict(num_hidden_layers=2, pooler_hidden_size=32)),
    "distilbert": (transformers.DistilBertConfig, transformers.DistilBertForMultipleChoice,
                   dict(n_layers=2, dim=32, n_heads=2, hidden_dim=64, vocab_size=100)),
}


def tiny_model(model_type: str, seed: int = 0) -> torch.nn.Module:
    config_class, model_class, overrides = TINY[model_type]
    sizes = {} if model_type == "distilbert" else dict(_SIZES)
    torch.manual_seed(seed)
    model = model_class(config_class(**sizes, **overrides))
    model.eval()
    return model


def tiny_batch(seed: int = 0, batch: int = 2, choices: int = 4, seq: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (batch, choices, seq), generator=g)  # (batch, choices, seq)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[:, :, -3:] = 0  # some padding, as real batches have
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": torch.randint(0, choices, (batch,), generator=g),
        "choice_mask": torch.ones(batch, choices, dtype=torch.bool),
    }


@pytest.fixture(scope="session")
def science_exam() -> Path:
    if not SCIENCE.is_dir():
        pytest.skip("../shared/data/science-exam is not present")
    return SCIENCE


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from loralab.models import load_tokenizer

    return load_tokenizer("minilm")
