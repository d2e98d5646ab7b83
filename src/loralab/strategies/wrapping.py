"""What every adapter that wraps a linear layer (LoRA, DoRA, VeRA, IA3) does to a model the same way: put a
module in a named place, merge or unmerge every wrapper of one kind, and take the wrappers out again.

A wrapper keeps the layer it wraps as `base` and has `merge()` and `unmerge()`, both idempotent.
"""

from __future__ import annotations

from torch import nn


def put(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where the submodule `name` of `model` is."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def wrappers(model: nn.Module, kind: type) -> list:
    return [m for m in model.modules() if isinstance(m, kind)]


def merge_all(model: nn.Module, kind: type) -> None:
    """Merge every wrapper of `kind` into its base weight (idempotent)."""
    for layer in wrappers(model, kind):
        layer.merge()


def unmerge_all(model: nn.Module, kind: type) -> None:
    """Take every merged wrapper of `kind` back out of its base weight (idempotent)."""
    for layer in wrappers(model, kind):
        layer.unmerge()


def unwrap(model: nn.Module, kind: type) -> None:
    """Merge every wrapper of `kind` and put its base layer back in its place, in place: `X.base.weight` is
    `X.weight` again, the base architecture and its parameter names; there is no way back."""
    # Collect first: replacing children while iterating named_modules() would skip some.
    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, kind)]
    for name, layer in wrapped:
        layer.merge()
        put(model, name, layer.base)
