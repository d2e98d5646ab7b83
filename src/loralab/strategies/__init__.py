"""Strategies decide which weights train and how; the training loop never knows which one runs.

`apply_strategy(model, config)` changes the model in place and returns what it made trainable.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass, field, replace

from torch import nn

from loralab.errors import LoralabError
from loralab.models import architecture, count_parameters
from loralab.strategies.lora import LoraConfig, apply_lora
from loralab.strategies.selection import find_modules, freeze_all_but, head_modules
from loralab.strategies.subspace import SubspaceConfig, apply_subspace


class Strategy(enum.Enum):
    FULL = "full"
    ATTENTION = "attention"
    QV = "qv"
    LORA = "lora"
    SUBSPACE = "subspace"

    @classmethod
    def parse(cls, value: "str | Strategy") -> "Strategy":
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except (ValueError, TypeError):
            raise LoralabError(f"unknown strategy {value!r}; choose one of {', '.join(s.value for s in cls)}") from None


# The projection roles each selection strategy trains (None: every weight).
SELECTIONS: dict[Strategy, tuple[str, ...] | None] = {
    Strategy.FULL: None,
    Strategy.ATTENTION: ("query", "key", "value", "attention_output"),
    Strategy.QV: ("query", "value"),
}


@dataclass(frozen=True)
class StrategyConfig:
    """Which strategy to apply, and its settings."""

    strategy: Strategy = Strategy.FULL
    """The strategy: full, attention, qv, lora or subspace."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA settings (used by the lora strategy only)."""
    subspace: SubspaceConfig = field(default_factory=lambda: SubspaceConfig(dim=1000))
    """Random-subspace settings (used by the subspace strategy only); the head decides `direct`."""
    train_head: bool = True
    """Train the task head; when False it stays at its random initialisation."""

    def __post_init__(self):
        object.__setattr__(self, "strategy", Strategy.parse(self.strategy))
        if not isinstance(self.train_head, bool):
            raise LoralabError(f"invalid strategy.train_head={self.train_head!r}: expected true or false")
        if self.strategy is Strategy.FULL and not self.train_head:
            raise LoralabError("train_head=False conflicts with strategy 'full', which trains every weight")
        if self.subspace.direct:
            raise LoralabError("subspace.direct is set by train_head in a run; leave it empty")


@dataclass(frozen=True)
class StrategyReport:
    """What a strategy made trainable."""

    trainable_params: int
    total_params: int
    adapted_modules: tuple[str, ...]

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / self.total_params


def apply_strategy(model: nn.Module, config: StrategyConfig) -> StrategyReport:
    arch = architecture(model)
    head = head_modules(model, arch) if config.train_head else []
    if config.strategy is Strategy.SUBSPACE:
        # Every weight moves through the subspace; a trained head trains directly beside it.
        total = sum(p.numel() for p in model.parameters())
        subspace = apply_subspace(model, replace(config.subspace, direct=tuple(head)))
        direct = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad) - subspace.trainable
        if not config.train_head:
            warnings.warn(f"the task head ({', '.join(arch.head)}) trains only through the subspace, "
                          "starting from its random initialisation", stacklevel=2)
        return StrategyReport(subspace.trainable + direct, total, subspace.names)
    if config.strategy is Strategy.LORA:
        freeze_all_but(model, head)
        adapted = apply_lora(model, config.lora, find_modules(model, arch, config.lora.targets))
    else:
        roles = SELECTIONS[config.strategy]
        adapted = None if roles is None else find_modules(model, arch, roles)
        freeze_all_but(model, None if adapted is None else adapted + head)
        adapted = adapted or []
    if not config.train_head:
        warnings.warn(
            f"the task head ({', '.join(arch.head)}) is frozen at its random initialisation; "
            "its scores carry no learned signal",
            stacklevel=2,
        )
    trainable, total = count_parameters(model)
    return StrategyReport(trainable, total, tuple(adapted))
