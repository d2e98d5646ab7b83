"""Where a task head starts: its output bias, and the untrained modules of the checkpoint that train with it.

A new head's output bias starts at 0. Regression targets far from 0 then cost a frozen base (LoRA) its
first steps moving that one number, and the model can settle on a constant prediction; a bias at the
training targets' mean starts from the best constant instead. A classification bias can likewise start
at the label prior (log of each class's share). Separately, a checkpoint may ship a module its task model
scores through still at its initialisation (all-MiniLM-L6-v2's pooler: bias exactly 0, weights at a
random draw); frozen, every score passes a random layer, so it trains with the head.

What a run did is its `HeadStart`, recorded in `run.json` as `head_start` and applied again, before the
strategy, wherever the run is rebuilt (evaluate, predict, merge, resume): under a random subspace the head
may train only through the subspace, so its start is part of theta_0 and is not in the saved weights. A
record without `head_start` (older runs) did neither, and reads as nothing done.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from loralab.errors import LoralabError
from loralab.models.architectures import architecture, is_linear, mark_untrained
from loralab.names import has_prefix
from loralab.settings.head import HeadConfig

WIDTH = 1.5
"""An untrained layer's weights are no wider than this many times the config's initializer_range. A fresh
draw has about 1 (all-mpnet-base-v2's pooler: 0.020 at 0.02; all-MiniLM-L6-v2's: 0.009); trained layers
are wider (MiniLM's attention: 0.10), and their biases are not all exactly 0."""


@dataclass(frozen=True)
class HeadStart:
    """What a run did to its fresh task model before the strategy."""

    bias: tuple[float, ...] | None = None
    """The head's output bias (one per output), or None: as the model was built."""
    untrained: tuple[str, ...] = ()
    """Modules of the checkpoint found untrained, which trained with the head."""
    how: str = ""
    """Where `bias` came from: "mean" (the regression targets'), "prior" (the class shares') or ""."""

    def to_record(self) -> dict[str, Any]:
        return {"bias": None if self.bias is None else list(self.bias), "bias_from": self.how or None,
                "untrained": list(self.untrained)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "HeadStart":
        """A run record's start; a record from before head starts has none, and did nothing."""
        data = record.get("head_start") or {}
        bias = data.get("bias")
        return cls(None if bias is None else tuple(float(b) for b in bias), tuple(data.get("untrained") or ()),
                   data.get("bias_from") or "")


def output_layer(model: torch.nn.Module) -> tuple[str, torch.nn.Module] | None:
    """The head's last linear layer that has a bias (BERT's `classifier`, RoBERTa's `classifier.out_proj`);
    None where it has none (a decoder's `score`)."""
    head = architecture(model).head
    found = [(name, module) for name, module in model.named_modules()
             if any(has_prefix(name, h) for h in head) and is_linear(module) and module.bias is not None]
    return found[-1] if found else None


def untrained_modules(model: torch.nn.Module) -> tuple[str, ...]:
    """The poolers of `model` (outside its head) still at their initialisation: every linear layer in them has a
    bias of exact zeros and weights no wider than `WIDTH` x initializer_range. A task model only builds a pooler
    it scores through (BERT's classification and multiple-choice models do; RoBERTa's classification does not)."""
    arch = architecture(model)
    width = WIDTH * float(getattr(model.config, "initializer_range", 0.02) or 0.02)
    found = []
    for name, module in model.named_modules():
        if name.rpartition(".")[2] != "pooler" or any(has_prefix(name, h) for h in arch.head):
            continue
        linears = [m for m in module.modules() if is_linear(m)]
        if linears and all(m.bias is not None and not bool(m.bias.detach().any())
                           and float(m.weight.detach().float().std()) <= width for m in linears):
            found.append(name)
    return tuple(found)


def plan(model: torch.nn.Module, config: HeadConfig, task: str, targets: Sequence[Any]) -> HeadStart:
    """The start `config` asks for, for `task` ("regression", "classification", ...) trained on `targets`."""
    untrained = untrained_modules(model) if config.untrained else ()
    layer = output_layer(model)
    bias, how = None, ""
    if layer is not None and task == "regression" and config.regression == "mean":
        values = [float(t) for t in targets]
        bias, how = (math.fsum(values) / len(values),), "mean"
    elif layer is not None and task == "classification" and config.prior:
        counts = Counter(int(t) for t in targets)
        classes = layer[1].out_features
        # Every class has a training example (the label set is read from the training labels); a class
        # with none would get log 0, so it is floored at half an example.
        bias, how = tuple(math.log(max(counts.get(c, 0), 0.5) / len(targets)) for c in range(classes)), "prior"
    return HeadStart(bias, untrained, how)


def apply_head_start(model: torch.nn.Module, start: HeadStart) -> None:
    """Give `model` (fresh, before any strategy) the start a run recorded."""
    if start.untrained:
        mark_untrained(model, start.untrained)
    if start.bias is None:
        return
    layer = output_layer(model)
    if layer is None or layer[1].bias.numel() != len(start.bias):
        raise LoralabError(f"the recorded head start has {len(start.bias)} bias value(s), but this "
                           f"{type(model).__name__}'s head has no output layer of that size")
    with torch.no_grad():
        layer[1].bias.copy_(torch.tensor(start.bias, dtype=layer[1].bias.dtype))
