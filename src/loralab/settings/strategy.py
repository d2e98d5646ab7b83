"""What trains and how: the strategy and the settings of LoRA and of random subspaces."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from loralab.errors import LoralabError
from loralab.settings.table import group, setting
from loralab.validate import SettingError, names, number


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


class Projection(enum.Enum):
    DENSE = "dense"
    SPARSE = "sparse"
    FASTFOOD = "fastfood"
    SAID = "said"

    @classmethod
    def parse(cls, value: "str | Projection") -> "Projection":
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except (ValueError, TypeError):
            raise LoralabError(
                f"invalid projection={value!r}: choose one of {', '.join(p.value for p in cls)}"
            ) from None


@dataclass(frozen=True)
class LoraConfig:
    """Settings of the LoRA adapters."""

    r: int = setting(8, "LoRA: rank of the update B A.", key="lora_r", folder="r", label="r")
    alpha: float = setting(32.0, "LoRA: scale numerator; the update is multiplied by alpha / r (alpha / sqrt(r) "
                           "with rslora).", key="lora_alpha", folder="alpha", label="alpha")
    dropout: float = setting(0.0, "LoRA: dropout on the adapter's input x; the frozen path sees x unchanged.",
                             key="lora_dropout", folder="dropout", label="dropout")
    targets: tuple[str, ...] = setting(("query", "value"), "LoRA: comma list of projection roles (query, key, "
                                       "value, attention_output), all-linear, or module-name suffixes.",
                                       key="lora_targets", metavar="TARGETS")
    rslora: bool = setting(False, "LoRA: scale by alpha / sqrt(r) (rank-stabilised LoRA) instead of alpha / r.")

    def __post_init__(self):
        number("strategy.lora.r", self.r, integer=True, low=1)
        number("strategy.lora.alpha", self.alpha, low=0, low_open=True)
        number("strategy.lora.dropout", self.dropout, low=0, high=1, high_open=True)
        object.__setattr__(self, "targets", names("strategy.lora.targets", self.targets))
        if not isinstance(self.rslora, bool):
            raise SettingError("strategy.lora.rslora", self.rslora, "true or false")

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)


@dataclass(frozen=True)
class SubspaceConfig:
    """Settings of random-subspace training."""

    dim: int = setting(1000, "Subspace: d, how many numbers train (with said, the per-tensor scales count "
                       "towards it).", key="subspace_dim", folder="d", label="d")
    projection: Projection = setting(Projection.FASTFOOD, "Subspace: how the fixed random projection P is built: "
                                     "dense, sparse, fastfood or said.", choices=tuple(p.value for p in Projection))
    seed: int = setting(0, "Subspace: seed of the torch.Generator that builds P; with theta it reproduces the "
                        "trained model.", key="subspace_seed", label="P seed")
    exclude: tuple[str, ...] = setting((), "Subspace: comma list of parameter-name prefixes left out of the "
                                       "subspace and frozen (e.g. bert.embeddings.word_embeddings).",
                                       key="subspace_exclude", metavar="PREFIXES")

    def __post_init__(self):
        number("strategy.subspace.dim", self.dim, integer=True, low=1)
        object.__setattr__(self, "projection", Projection.parse(self.projection))
        number("strategy.subspace.seed", self.seed, integer=True, low=0, high=2**63 - 1)
        for field in ("exclude",):
            value = getattr(self, field)
            if not isinstance(value, (list, tuple)):
                raise LoralabError(f"invalid {field}={value!r}: expected a list of name prefixes")
            object.__setattr__(self, field, tuple(value))
            for prefix in getattr(self, field):
                if not isinstance(prefix, str) or not prefix or prefix.startswith(".") or prefix.endswith("."):
                    raise LoralabError(f"invalid {field} entry {prefix!r}: expected a module or parameter name")

    def to_dict(self) -> dict:
        return {"dim": self.dim, "projection": self.projection.value, "seed": self.seed,
                "exclude": list(self.exclude)}


@dataclass(frozen=True)
class StrategyConfig:
    """Which strategy to apply, and its settings."""

    strategy: Strategy = setting(Strategy.FULL, "What trains: full, attention, qv, lora or subspace.",
                                 choices=tuple(s.value for s in Strategy))
    lora: LoraConfig = group(LoraConfig, "LoRA settings (used by the lora strategy only).")
    subspace: SubspaceConfig = group(SubspaceConfig, "Random-subspace settings (used by the subspace strategy only).")
    train_head: bool = setting(True, "Train the task head; with --no-train-head it stays at its random "
                               "initialisation (under subspace it then moves only through the subspace).",
                               folder="head", label="head")

    def __post_init__(self):
        object.__setattr__(self, "strategy", Strategy.parse(self.strategy))
        if not isinstance(self.train_head, bool):
            raise LoralabError(f"invalid strategy.train_head={self.train_head!r}: expected true or false")
        if self.strategy is Strategy.FULL and not self.train_head:
            raise LoralabError("train_head=False conflicts with strategy 'full', which trains every weight")
