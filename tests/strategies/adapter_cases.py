"""What every adapter method's tests share: the two tiny models, their batch, and the invariants' checks.

A method's test file lists its cases in a table (model, targets, settings) and calls these; nothing
here knows which method it runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from conftest import CLASSIFICATION, tiny_model, tiny_text_batch
from loralab.models import architecture
from loralab.strategies.selection import find_modules


def base_model(model_type: str) -> torch.nn.Module:
    """A tiny encoder ("bert") or decoder ("llama") with a sequence-classification head whose weights have
    std 0.2, not 0.02: logits ten times larger, so that a changed feature shows in them above an atol of 1e-5."""
    model = tiny_model(model_type, head=CLASSIFICATION)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in architecture(model).head:
            head = model.get_submodule(name)
            head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.2)
    return model


def batch() -> dict[str, torch.Tensor]:
    return {k: v for k, v in tiny_text_batch().items() if k != "labels"}


@torch.no_grad()
def outputs(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    return model(**batch()).logits


def targets(model: torch.nn.Module, roles: tuple[str, ...]) -> list[str]:
    return find_modules(model, architecture(model), roles)


def adapted(model_type: str, apply, config, roles) -> torch.nn.Module:
    """A tiny model, everything frozen, then `apply(model, config, names)` on the modules `roles` pick."""
    model = base_model(model_type)
    model.requires_grad_(False)
    apply(model, config, targets(model, roles))
    return model


def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> None:
    """Move every trainable tensor off its initialisation, so that equalities below are not vacuous."""
    g = torch.Generator().manual_seed(seed)
    for p in trainable(model).values():
        p.add_(torch.randn(p.shape, generator=g) * scale)


def assert_round_trip(model: torch.nn.Module, fresh: torch.nn.Module, folder: Path) -> None:
    """Save the trainable tensors (safetensors), load them into `fresh`: bitwise the same tensors and outputs."""
    state = {n: p.detach().contiguous() for n, p in trainable(model).items()}
    save_file(state, folder / "adapter.safetensors")
    loaded = load_file(folder / "adapter.safetensors")
    missing = set(trainable(fresh)) ^ set(loaded)
    assert not missing, missing
    fresh.load_state_dict(loaded, strict=False)
    for name, tensor in trainable(fresh).items():
        assert torch.equal(tensor, state[name]), name
    assert torch.equal(outputs(fresh), outputs(model))
