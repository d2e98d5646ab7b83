"""What the training loop is given, as protocols: it imports neither the tasks nor the strategies.

A task (`loralab.tasks`) supplies batches, a loss, outputs and metrics; a strategy
(`loralab.strategies`) supplies parameter groups, each with its own learning rate where it needs
one; the run (`loralab.runs.one_run`) joins them to the loop, with any per-epoch hook.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol, Sequence

import torch
from torch import nn


class Task(Protocol):
    """What training and evaluation ask of a task (every `loralab.tasks` task is one)."""

    def collate(self, items: list[Any], pad_id: int) -> dict[str, torch.Tensor]: ...

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], packed: bool) -> torch.Tensor: ...

    def outputs(self, model: nn.Module, batch: dict[str, torch.Tensor], packed: bool) -> list[list[float]]: ...

    def targets(self, items: Sequence[Any]) -> list[Any]: ...

    def scores(self, outputs: Sequence[Sequence[float]], targets: Sequence[Any]) -> dict[str, float]: ...


class ParamGroup(Protocol):
    """Trainable parameters that share their optimizer settings (a strategy's `ParamGroup` is one)."""

    @property
    def params(self) -> tuple[nn.Parameter, ...]: ...

    @property
    def lr(self) -> float | None:
        """The group's own peak learning rate; None: the run's `lr`, pooled with the other weights."""

    # Optional: `optimizer`, an `OptimizerChoice` the group asks for instead of AdamW (read with getattr).


class OptimizerChoice(Protocol):
    """An optimizer a parameter group asks for instead of AdamW, and the group's own options in it.

    `make(param_groups, lr)` builds an AdamW-like optimizer from torch-style parameter groups; the
    group's `options` join its torch group (GaLore's rank and projection gap, say). The loop names no
    method: whatever a strategy hands it is built.
    """

    @property
    def make(self) -> Callable[[list[dict], float], torch.optim.Optimizer]: ...

    @property
    def options(self) -> dict: ...


class Group(NamedTuple):
    """A parameter group the loop makes itself: every trainable parameter, or a group re-made after sharding."""

    params: tuple[nn.Parameter, ...]
    lr: float | None = None


EpochHook = Callable[[Sequence[Any], torch.Generator], Sequence[Any]]
"""Called as each epoch starts with the examples and the loop's data-order generator; returns the
epoch's examples (a decoder's multiple choice shows each question's options in a new order)."""


class Step(NamedTuple):
    """An optimizer step just taken, as a step hook sees it; `snapshot()` is the loop's whole state
    (`loralab.training.snapshot`), taken only when asked for."""

    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_per_second: float
    snapshot: Callable[[], Any]


StepHook = Callable[[Step], bool]
"""Called after every optimizer step (the model back in training mode after it); True stops training
there (early stopping). The run evaluates, checkpoints and reports to trackers through it."""
