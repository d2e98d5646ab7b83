"""Activation (gradient) checkpointing: keep each block's input, recompute its inside for backward.

Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost": backward needs every
intermediate activation of the forward; instead of keeping them, keep only the input of each
repeated block (a transformer layer) and run the block's forward again when backward reaches it.
The activations held at once drop from all layers' to one layer's plus the layer boundaries, at the
price of about one more forward pass per step.

Two traps, both handled by torch's non-reentrant checkpoint (`use_reentrant=False`), used here:
- The reentrant variant's output requires grad only when one of its *inputs* does. Under LoRA the
  embeddings are frozen, so the hidden states entering layer 1 do not, and the adapters inside the
  checkpointed layers would silently get no gradient (why peft calls `enable_input_require_grads`).
- Dropout must draw the same masks when recomputed: torch saves and restores the RNG state around
  the recomputation, and loralab's dropout draws from torch's generator.

`enable(model)` marks the blocks (the model's longest `nn.ModuleList` of one module type: BERT's
`encoder.layer`, Llama's `layers`) and turns on transformers' own checkpointing where the model has
it (which also drops a decoder's key/value cache, that a recomputed layer would fill twice), else
wraps the blocks' forward itself (MPNet); the packed forward, which calls a block's submodules
itself, asks `run_block`. Checkpointing acts only while training with grad on.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from loralab.errors import LoralabError

_FLAG = "_loralab_checkpointed"


def blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks: the longest `nn.ModuleList` whose entries all share one type."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m)
             and len({type(block) for block in m}) == 1]
    if not lists:
        raise LoralabError(f"gradient checkpointing: {type(model).__name__} has no list of repeated layers to checkpoint")
    return list(max(lists, key=len))


def _active(block: nn.Module) -> bool:
    return getattr(block, _FLAG, False) is True and block.training and torch.is_grad_enabled()


def run_block(block: nn.Module, function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)`, checkpointed when `block` is marked and training with grad on."""
    if _active(block):
        return checkpoint(function, *args, use_reentrant=False)
    return function(*args)


_CACHES = ("cache", "past_key_values", "past_key_value", "layer_past")


def _wrap(block: nn.Module) -> None:
    forward = block.forward  # the class's bound forward

    def checkpointed(*args, **kwargs):
        if not _active(block):
            return forward(*args, **kwargs)
        # A decoder layer appends its keys and values to a cache: recomputing it would append them twice.
        # Training needs no cache (transformers' own checkpointing drops it the same way).
        kwargs = {k: None if k in _CACHES else v for k, v in kwargs.items()}
        if kwargs.get("use_cache"):
            kwargs["use_cache"] = False
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = checkpointed  # an instance attribute: deleting it restores the class's forward


def _transformers_switch(model: nn.Module) -> bool:
    """Whether transformers can checkpoint `model` itself: its switch also knows each architecture's
    key/value cache arguments, which a recomputed decoder layer would otherwise fill twice."""
    return bool(getattr(model, "supports_gradient_checkpointing", False)) and hasattr(
        model, "activation_checkpointing_enable")


def enable(model: nn.Module) -> int:
    """Checkpoint every repeated block of `model`; returns how many (idempotent)."""
    found = blocks(model)
    if getattr(model, _FLAG, False):
        return len(found)
    own = _transformers_switch(model)
    setattr(model, _FLAG, "transformers" if own else "wrapped")
    if own:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    for block in found:
        setattr(block, _FLAG, True)  # the packed forward's `run_block` reads it
        if not own:
            _wrap(block)
    return len(found)


def disable(model: nn.Module) -> None:
    how = getattr(model, _FLAG, None)
    if how is None:
        return
    delattr(model, _FLAG)
    if how == "transformers":
        model.activation_checkpointing_disable()
    for block in model.modules():
        if getattr(block, _FLAG, False) is True:
            delattr(block, _FLAG)
            if how == "wrapped":
                del block.forward  # the class's forward again


@contextlib.contextmanager
def checkpointing(model: nn.Module, on: bool):
    """Checkpoint `model`'s blocks inside the block when `on`; leaves the model as it found it."""
    if not on:
        yield
        return
    enable(model)
    try:
        yield
    finally:
        disable(model)
