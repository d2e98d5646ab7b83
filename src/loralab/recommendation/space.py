"""What a recommendation searches over: candidates (a model with a method) and each one's settings.

A *method* is a strategy with the options that make it what it is (DoRA is LoRA with `use_dora`,
LoRA+ is LoRA with `lora_plus_ratio` 16, PiSSA and OLoRA are LoRA with `lora_init`), and each has its
own learning-rate range, searched on a log scale: the fewer and smaller the numbers that train, the
larger the step they need. The ranges are centred on rates measured to leave the loss plateau (ln 5)
within one epoch of science-exam questions with MiniLM (`experiments/results/methods-epoch/`): LoRA
1e-3, DoRA 3e-3, LoRA+ 3e-4 (ratio 16), PiSSA and OLoRA 1e-3 (3e-3 stayed on the plateau), VeRA 3e-2
(1e-1 stayed), IA3 3e-2 (1e-2 stayed), GaLore 3e-4; full fine-tuning learns at 5e-5 to 1e-4. A range
reaches about three times either side of its rate, and stops where a measured rate stayed on the
plateau. LoRA's update starts at zero (B = 0) and is scaled by alpha / r, so its rates sit an order
of magnitude above full fine-tuning's; below about 3e-4 B grows too slowly from zero for a pilot of
tens of steps to show anything (the seed's LoRA at 1e-5 learned nothing, `experiments/results/seed-blog/`).

The LoRA family (lora, dora, lora-plus, pissa, olora) also searches its rank r, alpha and its targets:
query and value, or every linear layer (`all-linear`, best in a hand sweep on ARC-Easy).

A space can be made finite (`--lr-points N`: each method's rate is one of N points spread evenly over
its range on a log scale; `--lora-ranks`, `--lora-alphas`, `--lora-target-sets` narrow the rest), so
that every setting in it can also be trained (`recommend --grid`): the exhaustive reference a search
is judged against.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.settings import SETTINGS, RunConfig
from loralab.strategies import Strategy, StrategyConfig
from loralab.validate import SettingError, number


@dataclass(frozen=True)
class Method:
    """A strategy with the options that make it a method, and the learning rates searched for it."""

    name: str
    strategy: Strategy
    lr_range: tuple[float, float]
    fixed: tuple[tuple[str, Any], ...] = ()
    """Settings (by their key in the settings table) every run of the method has."""


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("full", Strategy.FULL, (3e-5, 2e-4)),
    Method("attention", Strategy.ATTENTION, (2e-5, 5e-4)),
    Method("qv", Strategy.QV, (2e-5, 5e-4)),
    Method("lora", Strategy.LORA, (3e-4, 3e-3)),
    Method("dora", Strategy.LORA, (1e-3, 1e-2), (("use_dora", True),)),
    Method("lora-plus", Strategy.LORA, (1e-4, 1e-3), (("lora_plus_ratio", 16.0),)),
    Method("pissa", Strategy.LORA, (3e-4, 2e-3), (("lora_init", "pissa"),)),
    Method("olora", Strategy.LORA, (3e-4, 2e-3), (("lora_init", "olora"),)),
    Method("vera", Strategy.VERA, (1e-2, 6e-2)),
    Method("ia3", Strategy.IA3, (2e-2, 1e-1)),
    Method("galore", Strategy.GALORE, (1e-4, 1e-3)),
    Method("subspace", Strategy.SUBSPACE, (1e-3, 1e-1)),
)}
# strategy -> its plain method's range (kept for callers that name ranges by strategy)
LR_RANGES: dict[Strategy, tuple[float, float]] = {Strategy(m.name): m.lr_range for m in METHODS.values()
                                                  if m.name in {s.value for s in Strategy}}
LORA_RANKS = (4, 8, 16)
LORA_ALPHAS = (8, 16, 32, 64)
LORA_TARGETS = {"qv": ("query", "value"), "all-linear": ("all-linear",)}
DEFAULT_STRATEGIES = ("full", "attention", "lora", "dora", "lora-plus", "pissa", "vera", "ia3")


def method(name: "str | Strategy") -> Method:
    """The method a `--strategies` entry names: a strategy (full, lora, vera, ...) or a LoRA variant."""
    key = name.value if isinstance(name, Strategy) else str(name)
    if key not in METHODS:
        raise SettingError("--strategies", key, "one of " + ", ".join(METHODS))
    return METHODS[key]


def model_slug(model: str) -> str:
    """A model's name as a folder name: its last path part ('minilm', 'tiny-bert')."""
    return Path(model.rstrip("/")).name or "model"


@dataclass(frozen=True)
class Candidate:
    """One model with one method, and the learning-rate range searched for it. Each candidate is a
    family of its own in the search: its settings compete only with each other (`search.py`)."""

    model: str
    """A model folder, 'minilm' or a hub name, as `RunConfig.model`."""
    strategy: Strategy
    """What trains."""
    lr_range: tuple[float, float]
    """(lowest, highest) peak learning rate searched, log-uniformly."""
    method: str | None = None
    """The method's name (None: the strategy's own, as older searches named it)."""
    fixed: tuple[tuple[str, Any], ...] = ()
    """Settings every run of this candidate has (DoRA's use_dora, LoRA+'s ratio, ...)."""
    lr_points: int | None = None
    """None: any rate in `lr_range`; N: one of N points spread evenly over it on a log scale."""
    lora_ranks: tuple[int, ...] = LORA_RANKS
    lora_alphas: tuple[float, ...] = LORA_ALPHAS
    lora_targets: tuple[str, ...] = tuple(LORA_TARGETS)
    """The LoRA family's ranks, alphas and target sets (names in `LORA_TARGETS`) searched."""

    def __post_init__(self):
        object.__setattr__(self, "strategy", Strategy.parse(self.strategy))
        object.__setattr__(self, "lr_range", tuple(self.lr_range))
        object.__setattr__(self, "fixed", tuple((k, v) for k, v in self.fixed))
        low, high = self.lr_range
        number("lr_range low", low, low=0, low_open=True)
        number("lr_range high", high, low=low)
        number("--lr-points", self.lr_points, integer=True, low=1, high=100, optional=True)
        for option, values in (("--lora-ranks", self.lora_ranks), ("--lora-alphas", self.lora_alphas),
                               ("--lora-target-sets", self.lora_targets)):
            if not values or len(set(values)) != len(values):
                raise SettingError(option, ",".join(map(str, values)), "one or more values, each once")
        for r in self.lora_ranks:
            number("--lora-ranks", r, integer=True, low=1)
        for alpha in self.lora_alphas:
            number("--lora-alphas", alpha, low=0, low_open=True)
        for target in self.lora_targets:
            if target not in LORA_TARGETS:
                raise SettingError("--lora-target-sets", target, "one of " + ", ".join(LORA_TARGETS))
        object.__setattr__(self, "lora_ranks", tuple(self.lora_ranks))
        object.__setattr__(self, "lora_alphas", tuple(self.lora_alphas))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))

    def lr_values(self) -> tuple[float, ...] | None:
        """The rates a finite space holds (two significant figures), lowest first; None: a continuous range."""
        low, high = self.lr_range
        if low == high:
            return (low,)
        if self.lr_points is None:
            return None
        if self.lr_points == 1:
            return (float(f"{math.sqrt(low * high):.2g}"),)
        n = self.lr_points - 1
        return tuple(dict.fromkeys(float(f"{low * (high / low) ** (i / n):.2g}") for i in range(n + 1)))

    def space(self) -> dict[str, tuple[Any, ...]]:
        """The choices of each setting other than the rate (the LoRA family's r, alpha and targets)."""
        if not self.lora_like:
            return {}
        return {"lora_r": self.lora_ranks, "lora_alpha": self.lora_alphas, "lora_targets": self.lora_targets}

    def narrowed(self) -> dict[str, Any]:
        """What this candidate's space sets apart from the defaults (empty: the default space), as the
        plan records it."""
        out: dict[str, Any] = {}
        if self.lr_points is not None:
            out["lr_points"] = self.lr_points
        for key, default in (("lora_ranks", LORA_RANKS), ("lora_alphas", LORA_ALPHAS),
                             ("lora_targets", tuple(LORA_TARGETS))):
            if getattr(self, key) != default:
                out[key] = list(getattr(self, key))
        return out

    @property
    def family(self) -> str:
        """The method's name: 'lora', 'dora', 'full', ..."""
        return self.method or self.strategy.value

    @property
    def name(self) -> str:
        return f"{model_slug(self.model)}-{self.family}"

    @property
    def lora_like(self) -> bool:
        return self.strategy is Strategy.LORA

    def space_size(self) -> int | None:
        """How many distinct settings it can draw (None: endless, a learning-rate range)."""
        rates = self.lr_values()
        if rates is None:
            return None
        return len(rates) * math.prod(len(values) for values in self.space().values())

    def grid(self) -> list[dict[str, Any]]:
        """Every setting of a finite space (refused for a continuous one), rate first."""
        rates = self.lr_values()
        if rates is None:
            raise SettingError("--lr-points", "none", "a number of rates per method, so that the space is finite")
        keys, choices = zip(*(("lr", rates), *self.space().items()))
        return [dict(zip(keys, values)) for values in itertools.product(*choices)]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw this candidate's settings from an Optuna trial; parameter names carry the candidate's
        name, so each candidate's sampler history is its own."""
        low, high = self.lr_range
        rates = self.lr_values()
        if rates is None:
            settings = {"lr": trial.suggest_float(f"{self.name}.lr", low, high, log=True)}
        else:
            settings = {"lr": trial.suggest_categorical(f"{self.name}.lr", rates) if len(rates) > 1 else rates[0]}
        for key, values in self.space().items():
            settings[key] = trial.suggest_categorical(f"{self.name}.{key}", values)
        return settings

    def config(self, base: RunConfig, settings: dict[str, Any]) -> RunConfig:
        """`base` with this candidate's model, strategy and fixed options and the drawn `settings`, named
        by their keys in the settings table (`lr`, `lora_r`, ...; `lora_targets` by its name in
        `LORA_TARGETS`). A strategy's own option group is carried from `base`; the others stay default."""
        own = {"lora": Strategy.LORA, "vera": Strategy.VERA, "ia3": Strategy.IA3, "galore": Strategy.GALORE}
        groups = {group: getattr(base.strategy, group) for group, strategy in own.items() if strategy is self.strategy}
        if self.strategy is not Strategy.LORA and not base.strategy.lora_options():
            groups["lora"] = base.strategy.lora  # as before methods: harmless when it holds no LoRA-only option
        strategy = StrategyConfig(strategy=self.strategy, subspace=base.strategy.subspace, **groups)
        values = {**dict(self.fixed), **settings}
        if isinstance(values.get("lora_targets"), str):
            values["lora_targets"] = LORA_TARGETS.get(values["lora_targets"], (values["lora_targets"],))
        return dataclasses.replace(base, model=self.model, strategy=strategy).replace(values)


def candidates(models: tuple[str, ...], strategies: "tuple[str | Strategy, ...]",
               lr_ranges: "dict[str | Strategy, tuple[float, float]] | None" = None,
               **space: Any) -> tuple[Candidate, ...]:
    """Every model x method, each with its method's learning-rate range (`lr_ranges`, keyed by method
    name or strategy, overrides) and the same narrowed space (`space`: `Candidate`'s lr_points,
    lora_ranks, lora_alphas, lora_targets)."""
    if not models:
        raise SettingError("--models", "", "at least one model")
    if not strategies:
        raise SettingError("--strategies", "", "at least one strategy")
    ranges = {(k.value if isinstance(k, Strategy) else k): v for k, v in (lr_ranges or {}).items()}
    out = []
    for model in models:
        for entry in strategies:
            m = method(entry)
            plain = m.name == m.strategy.value
            out.append(Candidate(model, m.strategy, ranges.get(m.name, m.lr_range), None if plain else m.name, m.fixed,
                                 **space))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise SettingError("--models", ",".join(models), "models with different folder names, each method once")
    return tuple(out)


def describe(settings: dict[str, Any]) -> str:
    """Settings as a short text, each by its report label: 'lr 3.2e-04, r 8, alpha 32, targets all-linear'."""
    parts = []
    for key, value in settings.items():
        setting = SETTINGS.by_key.get(key)
        label = "targets" if key == "lora_targets" else setting.report_label if setting else key
        if key == "lr":
            parts.append(f"{label} {value:.1e}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            parts.append(f"{label} {value:g}")
        else:
            parts.append(f"{label} {value}")
    return ", ".join(parts)
