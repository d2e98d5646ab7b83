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
    VERA = "vera"
    IA3 = "ia3"
    GALORE = "galore"

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


LORA_INITS = ("default", "pissa", "olora")


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
    use_dora: bool = setting(False, "LoRA: DoRA, a trained magnitude per output row over the adapted direction "
                             "(Liu et al. 2024).", folder="dora", label="DoRA")
    init: str = setting("default", "LoRA: how A and B start: default (B = 0), pissa (the weight's principal "
                        "components) or olora (its QR); the rest stays in the frozen base.",
                        key="lora_init", folder="init", label="init", choices=LORA_INITS)
    pissa_niter: int | None = setting(None, "LoRA: with --lora-init pissa, power iterations of a randomized SVD "
                                      "(none: the exact SVD).", metavar="N")
    plus_ratio: float | None = setting(None, "LoRA: LoRA+, B's learning rate over A's (16 is the paper's choice; "
                                       "none: one rate).", key="lora_plus_ratio", folder="plus", label="LoRA+ ratio")

    def __post_init__(self):
        number("strategy.lora.r", self.r, integer=True, low=1)
        number("strategy.lora.alpha", self.alpha, low=0, low_open=True)
        number("strategy.lora.dropout", self.dropout, low=0, high=1, high_open=True)
        object.__setattr__(self, "targets", names("strategy.lora.targets", self.targets))
        for field in ("rslora", "use_dora"):
            if not isinstance(getattr(self, field), bool):
                raise SettingError(f"strategy.lora.{field}", getattr(self, field), "true or false")
        if self.init not in LORA_INITS:
            raise SettingError("strategy.lora.init", self.init, "one of " + ", ".join(LORA_INITS))
        number("strategy.lora.pissa_niter", self.pissa_niter, integer=True, low=0, optional=True)
        if self.pissa_niter is not None and self.init != "pissa":
            raise SettingError("strategy.lora.pissa_niter", self.pissa_niter, f"none with lora init {self.init} "
                               "(PiSSA only)")
        number("strategy.lora.plus_ratio", self.plus_ratio, low=0, low_open=True, optional=True)

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
class VeraConfig:
    """Settings of VeRA: shared frozen random A and B, trained scaling vectors b and d."""

    r: int = setting(256, "VeRA: rank of the shared random matrices (far larger than LoRA's: they do not train).",
                     key="vera_r", folder="vera-r", label="VeRA r")
    targets: tuple[str, ...] = setting(("query", "value"), "VeRA: comma list of projection roles, all-linear, or "
                                       "module-name suffixes.", key="vera_targets", metavar="TARGETS")
    seed: int = setting(0, "VeRA: seed of the shared random A and B (never saved: the seed rebuilds them).",
                        key="vera_seed", label="VeRA seed")
    d_initial: float = setting(0.1, "VeRA: starting value of every entry of d.", key="vera_d_initial")
    dropout: float = setting(0.0, "VeRA: dropout on the adapter's input x.", key="vera_dropout")

    def __post_init__(self):
        number("strategy.vera.r", self.r, integer=True, low=1)
        object.__setattr__(self, "targets", names("strategy.vera.targets", self.targets))
        number("strategy.vera.seed", self.seed, integer=True, low=0)
        number("strategy.vera.d_initial", self.d_initial)
        number("strategy.vera.dropout", self.dropout, low=0, high=1, high_open=True)


@dataclass(frozen=True)
class IA3Config:
    """Which layers IA3 rescales."""

    targets: tuple[str, ...] = setting(("key", "value"), "IA3: layers whose output is scaled: projection roles "
                                       "or module-name suffixes.", key="ia3_targets", metavar="TARGETS")
    feedforward: tuple[str, ...] = setting(("ffn_output",), "IA3: layers whose input is scaled: ffn_output (the "
                                           "FFN's output projection) or module-name suffixes; empty for none.",
                                           key="ia3_feedforward", metavar="TARGETS")

    def __post_init__(self):
        object.__setattr__(self, "targets", names("strategy.ia3.targets", self.targets, allow_empty=True))
        object.__setattr__(self, "feedforward", names("strategy.ia3.feedforward", self.feedforward, allow_empty=True))
        if not self.targets and not self.feedforward:
            raise SettingError("strategy.ia3.targets", self.targets, "a layer to rescale (here or in feedforward)")


@dataclass(frozen=True)
class GaloreConfig:
    """Settings of GaLore's gradient projection (every weight trains)."""

    rank: int = setting(128, "GaLore: r, the directions each weight matrix's gradient is projected onto.",
                        key="galore_rank", folder="galore-r", label="GaLore r")
    update_proj_gap: int = setting(200, "GaLore: steps between recomputations of the projection (an SVD of the "
                                   "gradient).", key="galore_update_proj_gap", label="GaLore gap")
    scale: float = setting(0.25, "GaLore: the projected-back update is multiplied by it.", key="galore_scale",
                           label="GaLore scale")
    targets: tuple[str, ...] = setting(("all-linear",), "GaLore: layers whose weight is projected (roles, "
                                       "all-linear or suffixes); the rest take plain AdamW steps.",
                                       key="galore_targets", metavar="TARGETS")

    def __post_init__(self):
        number("strategy.galore.rank", self.rank, integer=True, low=1)
        number("strategy.galore.update_proj_gap", self.update_proj_gap, integer=True, low=1)
        number("strategy.galore.scale", self.scale, low=0, low_open=True)
        object.__setattr__(self, "targets", names("strategy.galore.targets", self.targets))


@dataclass(frozen=True)
class StrategyConfig:
    """Which strategy to apply, and its settings."""

    strategy: Strategy = setting(Strategy.FULL, "What trains: full, attention, qv, lora, subspace, vera, ia3 or "
                                 "galore (every weight, GaLore's optimizer).",
                                 choices=tuple(s.value for s in Strategy))
    lora: LoraConfig = group(LoraConfig, "LoRA settings (used by the lora strategy only).")
    subspace: SubspaceConfig = group(SubspaceConfig, "Random-subspace settings (used by the subspace strategy only).")
    vera: VeraConfig = group(VeraConfig, "VeRA settings (used by the vera strategy only).")
    ia3: IA3Config = group(IA3Config, "IA3 settings (used by the ia3 strategy only).")
    galore: GaloreConfig = group(GaloreConfig, "GaLore settings (used by the galore strategy only).")
    train_head: bool = setting(True, "Train the task head; with --no-train-head it stays at its random "
                               "initialisation (under subspace it then moves only through the subspace).",
                               folder="head", label="head")

    def __post_init__(self):
        object.__setattr__(self, "strategy", Strategy.parse(self.strategy))
        if not isinstance(self.train_head, bool):
            raise LoralabError(f"invalid strategy.train_head={self.train_head!r}: expected true or false")
        if self.strategy in (Strategy.FULL, Strategy.GALORE) and not self.train_head:
            raise LoralabError(f"train_head=False conflicts with strategy '{self.strategy.value}', which trains every weight")
        for name, value in self.lora_options().items():
            if self.strategy is not Strategy.LORA:
                raise SettingError(f"strategy.lora.{name}", value, f"its default with strategy "
                                   f"{self.strategy.value} (a LoRA option)")
        for name, own in (("vera", Strategy.VERA), ("ia3", Strategy.IA3), ("galore", Strategy.GALORE)):
            if self.strategy is not own and getattr(self, name) != type(getattr(self, name))():
                raise LoralabError(f"strategy.{name} settings apply to strategy {own.value} only, not "
                                   f"{self.strategy.value}")

    def lora_options(self) -> dict:
        """The LoRA options (DoRA, PiSSA/OLoRA, LoRA+) this config turns on, by field name."""
        lora, default = self.lora, LoraConfig()
        return {name: getattr(lora, name) for name in ("use_dora", "init", "pissa_niter", "plus_ratio")
                if getattr(lora, name) != getattr(default, name)}
