"""Strategies decide which weights train and how; the training loop never knows which one runs.

`apply_strategy(model, config)` changes the model in place and returns what it made trainable.
`STRATEGIES` is the one table of them: per strategy, how it is applied and how what trained is
merged back into a plain model (`loralab.runs.merge`).
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from torch import nn

from loralab.errors import LoralabError
from loralab.settings.strategy import Strategy, StrategyConfig
from loralab.models import Architecture, architecture, count_parameters
from loralab.strategies.lora import LoraConfig, apply_lora, merge_lora
from loralab.strategies.selection import find_modules, freeze_all_but, head_modules
from loralab.strategies.subspace import SubspaceConfig, apply_subspace, merge_subspace




# The projection roles each selection strategy trains (None: every weight).
SELECTIONS: dict[Strategy, tuple[str, ...] | None] = {
    Strategy.FULL: None,
    Strategy.ATTENTION: ("query", "key", "value", "attention_output"),
    Strategy.QV: ("query", "value"),
}




class ParamGroup(NamedTuple):
    """Trainable parameters that share their optimiser settings."""

    role: str
    """"weights", or "theta": a subspace's coordinates, which a run trains at `training.theta_lr` when it is set."""
    params: tuple[nn.Parameter, ...]
    lr: float | None = None
    """The group's own peak learning rate (the run sets it from its config); None: the run's `lr`."""


@dataclass(frozen=True)
class StrategyReport:
    """What a strategy made trainable."""

    trainable_params: int
    total_params: int
    adapted_modules: tuple[str, ...]
    groups: tuple[ParamGroup, ...]
    """Every parameter that trains, in the model's parameter order, grouped by role (see `_groups`)."""

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / self.total_params


def _groups(model: nn.Module, roles: dict[int, str] | None = None) -> tuple[ParamGroup, ...]:
    """The parameters that require grad, in the model's order, cut into runs of one role.

    `roles` gives a parameter (by id) its role; any other is "weights". Runs, not one group per role,
    keep the model's order: the training loop pools a group without a learning rate of its own back
    with the weights, and its gradient-norm clipping sums in that order, bit for bit as before.
    """
    roles = roles or {}
    runs: list[tuple[str, list[nn.Parameter]]] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        role = roles.get(id(p), "weights")
        if runs and runs[-1][0] == role:
            runs[-1][1].append(p)
        else:
            runs.append((role, [p]))
    return tuple(ParamGroup(role, tuple(params)) for role, params in runs)


def _head(model: nn.Module, arch: Architecture, config: StrategyConfig) -> list[str]:
    return head_modules(model, arch) if config.train_head else []


def _warn_frozen_head(arch: Architecture) -> None:
    if not arch.head:  # a causal LM has no new head to leave untrained
        return
    # stacklevel 4: past this helper, the strategy's apply function and apply_strategy, to their caller.
    warnings.warn(
        f"the task head ({', '.join(arch.head)}) is frozen at its random initialisation; "
        "its scores carry no learned signal",
        stacklevel=4,
    )


def _apply_selection(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    arch = architecture(model)
    head = _head(model, arch, config)
    roles = SELECTIONS[config.strategy]
    adapted = None if roles is None else find_modules(model, arch, roles)
    freeze_all_but(model, None if adapted is None else adapted + head)
    if not config.train_head:
        _warn_frozen_head(arch)
    trainable, total = count_parameters(model)
    return StrategyReport(trainable, total, tuple(adapted or []), _groups(model))


def _apply_lora(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    arch = architecture(model)
    head = _head(model, arch, config)
    freeze_all_but(model, head)
    adapted = apply_lora(model, config.lora, find_modules(model, arch, config.lora.targets))
    if not config.train_head:
        _warn_frozen_head(arch)
    trainable, total = count_parameters(model)
    return StrategyReport(trainable, total, tuple(adapted), _groups(model))


def _apply_subspace(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    arch = architecture(model)
    head = _head(model, arch, config)
    # Every weight moves through the subspace; a trained head trains directly beside it.
    total = sum(p.numel() for p in model.parameters())
    subspace = apply_subspace(model, config.subspace, head=tuple(head))
    direct = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad) - subspace.trainable
    if not config.train_head and arch.head:
        warnings.warn(f"the task head ({', '.join(arch.head)}) trains only through the subspace, "
                      "starting from its random initialisation", stacklevel=3)
    return StrategyReport(subspace.trainable + direct, total, subspace.names,
                          _groups(model, {id(subspace.theta): "theta"}))


def _trained_in_place(model: nn.Module) -> None:
    """Selection strategies: the trained tensors already sit where the base model keeps them."""


@dataclass(frozen=True)
class Mechanism:
    """How a strategy acts on a model."""

    apply: Callable[[nn.Module, StrategyConfig], StrategyReport]
    """Adapts the model in place for training; returns what it made trainable."""
    merge: Callable[[nn.Module], None]
    """Merges what trained into the plain base architecture, in place (`loralab.runs.merge` writes it out)."""


# Full, attention and qv are one mechanism, choosing what trains, with different selections.
SELECTION = Mechanism(_apply_selection, _trained_in_place)

STRATEGIES: dict[Strategy, Mechanism] = {
    Strategy.FULL: SELECTION,
    Strategy.ATTENTION: SELECTION,
    Strategy.QV: SELECTION,
    Strategy.LORA: Mechanism(_apply_lora, merge_lora),
    Strategy.SUBSPACE: Mechanism(_apply_subspace, merge_subspace),
}


def apply_strategy(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    """Apply `config.strategy` to `model` in place; returns what it made trainable."""
    return STRATEGIES[config.strategy].apply(model, config)
