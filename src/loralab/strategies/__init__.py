"""Strategies decide which weights train and how; the training loop never knows which one runs.

`apply_strategy(model, config)` changes the model in place and returns what it made trainable.
`STRATEGIES` is the one table of them: per strategy, how it is applied and how what trained is
merged back into a plain model (`loralab.runs.merge`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from torch import nn

from loralab.errors import LoralabError
from loralab.settings.strategy import Strategy, StrategyConfig
from loralab.models import Architecture, architecture, count_parameters
from loralab.strategies.dora import DoraConfig, apply_dora, merge_dora
from loralab.strategies.galore import galore_choice, projected
from loralab.strategies.ia3 import apply_ia3, merge_ia3
from loralab.strategies.lora import LoraConfig, apply_lora, lora_layers, merge_lora
from loralab.strategies.lora_init import LoraInitConfig, apply_lora_init
from loralab.strategies.selection import find_modules, freeze_all_but, head_modules
from loralab.strategies.subspace import SubspaceConfig, apply_subspace, merge_subspace
from loralab.strategies.vera import apply_vera, merge_vera

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
    lr_scale: float | None = None
    """The group's learning rate over the run's `lr` (LoRA+'s B); the run turns it into `lr`."""
    optimizer: Any = None
    """An optimizer the group asks for instead of AdamW (`make`, `options`: GaLore's projected matrices)."""


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


def _warn_frozen_head(arch: Architecture, stacklevel: int = 4) -> None:
    if not arch.head:  # a causal LM has no new head to leave untrained
        return
    # stacklevel 4: past this helper, the strategy's apply function and apply_strategy, to their caller.
    warnings.warn(
        f"the task head ({', '.join(arch.head)}) is frozen at its random initialisation; "
        "its scores carry no learned signal",
        stacklevel=stacklevel,
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


def _adapt(model: nn.Module, config: StrategyConfig, wrap: Callable[[nn.Module, Architecture], list[str]],
           roles: Callable[[nn.Module], dict[int, str]] = lambda model: {}) -> StrategyReport:
    """Freeze all but the head, then let `wrap` add the adapters (which train); `roles` names special groups."""
    arch = architecture(model)
    freeze_all_but(model, _head(model, arch, config))
    adapted = wrap(model, arch)
    if not config.train_head:
        _warn_frozen_head(arch, stacklevel=5)  # one frame more: this helper's
    trainable, total = count_parameters(model)
    return StrategyReport(trainable, total, tuple(adapted), _groups(model, roles(model)))


def _apply_lora(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    """LoRA and its options: DoRA's magnitudes, PiSSA/OLoRA's start, LoRA+'s faster B."""
    lora = config.lora

    def wrap(model: nn.Module, arch: Architecture) -> list[str]:
        targets = find_modules(model, arch, lora.targets)
        adapted = apply_dora(model, DoraConfig(lora), targets) if lora.use_dora else apply_lora(model, lora, targets)
        if lora.init != "default":
            apply_lora_init(model, LoraInitConfig(lora.init, lora.pissa_niter))
        return adapted

    def roles(model: nn.Module) -> dict[int, str]:
        return {id(layer.lora_B): "lora_B" for layer in lora_layers(model)} if lora.plus_ratio is not None else {}

    report = _adapt(model, config, wrap, roles)
    groups = tuple(g._replace(lr_scale=lora.plus_ratio) if g.role == "lora_B" else g for g in report.groups)
    return dataclasses.replace(report, groups=groups)


def _apply_vera(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    return _adapt(model, config, lambda model, arch: apply_vera(model, config.vera,
                                                                find_modules(model, arch, config.vera.targets)))


def _apply_ia3(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    return _adapt(model, config, lambda model, arch: apply_ia3(model, config.ia3))


def _apply_galore(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    """Every weight trains; the matrices GaLore projects ask for its optimizer, the rest take its plain Adam steps."""
    freeze_all_but(model, None)
    matrices = projected(model, config.galore)
    choice = galore_choice(config.galore)
    groups = _groups(model, {id(p): "galore" for p in matrices})
    groups = tuple(g._replace(optimizer=choice) if g.role == "galore" else g for g in groups)
    trainable, total = count_parameters(model)
    names = {id(p): n for n, p in model.named_parameters()}
    return StrategyReport(trainable, total, tuple(names[id(p)].rpartition(".")[0] for p in matrices), groups)


def _merge_lora(model: nn.Module) -> None:
    merge_dora(model)  # DoRA layers first (each holds a LoRA layer); then plain LoRA; each a no-op when absent
    merge_lora(model)


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
    Strategy.LORA: Mechanism(_apply_lora, _merge_lora),
    Strategy.SUBSPACE: Mechanism(_apply_subspace, merge_subspace),
    Strategy.VERA: Mechanism(_apply_vera, merge_vera),
    Strategy.IA3: Mechanism(_apply_ia3, merge_ia3),
    Strategy.GALORE: Mechanism(_apply_galore, _trained_in_place),
}


def apply_strategy(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    """Apply `config.strategy` to `model` in place; returns what it made trainable."""
    return STRATEGIES[config.strategy].apply(model, config)
