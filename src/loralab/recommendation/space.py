"""What a recommendation searches over: candidates (a model with a method) and each one's settings.

A *method* is a strategy with the options that make it what it is (DoRA is LoRA with `use_dora`,
PiSSA and OLoRA are LoRA with `lora_init`, ...), with its own learning-rate range, searched on a log
scale, and the other settings that decide how well it does (the LoRA family's r, alpha and targets,
LoRA+'s ratio, VeRA's targets), each a categorical choice. Methods, ranges and choices are
`loralab.settings.methods`' table, which `compare` judges from too; why each range is where it is
is said there.

A space can be made finite (`--lr-points N`: each method's rate is one of N points spread evenly over
its range on a log scale; `--lora-ranks`, `--lora-alphas`, `--lora-target-sets` narrow the LoRA
family's choices), so that every setting in it can also be trained (`recommend --grid`): the
exhaustive reference a search is judged against.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.settings import SETTINGS, RunConfig
from loralab.settings.methods import TARGET_SETS, Method, get_method, targets
from loralab.strategies import Strategy, StrategyConfig
from loralab.validate import SettingError, number

DEFAULT_STRATEGIES = ("full", "attention", "lora", "dora", "lora+", "pissa", "vera", "ia3")
_NARROWED = {"lora_r": "--lora-ranks", "lora_alpha": "--lora-alphas", "lora_targets": "--lora-target-sets"}


def method(name: "str | Strategy") -> Method:
    """The method a `--strategies` entry names: a strategy (full, lora, vera, ...) or a variant (dora, lora+, ...)."""
    return get_method(name.value if isinstance(name, Strategy) else str(name), "--strategies")


def check_choice(key: str, values: tuple[Any, ...]) -> None:
    """Refuse, naming its option, a choice that is empty, repeats a value or holds one no run can take."""
    option = _NARROWED.get(key, key)
    if not values or len(set(values)) != len(values):
        raise SettingError(option, ",".join(map(str, values)), "one or more values, each once")
    for value in values:
        if key == "lora_r":
            number(option, value, integer=True, low=1)
        elif key == "lora_alpha":
            number(option, value, low=0, low_open=True)
        elif key.endswith("_targets") and value not in TARGET_SETS:
            raise SettingError(option, value, "one of " + ", ".join(TARGET_SETS))


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
    """Settings every run of this candidate has (DoRA's use_dora, PiSSA's lora_init, ...)."""
    lr_points: int | None = None
    """None: any rate in `lr_range`; N: one of N points spread evenly over it on a log scale."""
    choices: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    """The other settings searched, by key, each a categorical choice (targets by their set's name)."""

    def __post_init__(self):
        object.__setattr__(self, "strategy", Strategy.parse(self.strategy))
        object.__setattr__(self, "lr_range", tuple(self.lr_range))
        object.__setattr__(self, "fixed", tuple((k, v) for k, v in self.fixed))
        object.__setattr__(self, "choices", tuple((k, tuple(v)) for k, v in dict(self.choices).items()))
        low, high = self.lr_range
        number("lr_range low", low, low=0, low_open=True)
        number("lr_range high", high, low=low)
        number("--lr-points", self.lr_points, integer=True, low=1, high=100, optional=True)
        for key, values in self.choices:
            check_choice(key, values)

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
        """The choices of each setting other than the rate."""
        return dict(self.choices)

    def plan(self) -> dict[str, Any]:
        """What a resumed search must share: the points of the rate, if any, and the choices."""
        return ({"lr_points": self.lr_points} if self.lr_points is not None else {}) | {
            "choices": {k: list(v) for k, v in self.choices}}

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

    def params(self, settings: dict[str, Any]) -> dict[str, Any]:
        """`settings` as the Optuna parameters `suggest` draws them from (to ask for them: enqueue_trial)."""
        rates = self.lr_values()
        out = {} if rates is not None and len(rates) == 1 else {f"{self.name}.lr": settings["lr"]}
        out.update({f"{self.name}.{key}": settings[key] for key in self.space()})
        return out

    def config(self, base: RunConfig, settings: dict[str, Any]) -> RunConfig:
        """`base` with this candidate's model, strategy and fixed options and the drawn `settings`, named
        by their keys in the settings table (`lr`, `lora_r`, ...; targets by their set's name in
        `TARGET_SETS`). A strategy's own option group is carried from `base`; the others stay default."""
        own = {"lora": Strategy.LORA, "vera": Strategy.VERA, "ia3": Strategy.IA3, "galore": Strategy.GALORE}
        groups = {group: getattr(base.strategy, group) for group, strategy in own.items() if strategy is self.strategy}
        if self.strategy is not Strategy.LORA and not base.strategy.lora_options():
            groups["lora"] = base.strategy.lora  # as before methods: harmless when it holds no LoRA-only option
        strategy = StrategyConfig(strategy=self.strategy, subspace=base.strategy.subspace, **groups)
        values = {key: targets(key, value) for key, value in {**dict(self.fixed), **settings}.items()}
        return dataclasses.replace(base, model=self.model, strategy=strategy).replace(values)


def candidates(models: tuple[str, ...], strategies: "tuple[str | Strategy, ...]",
               lr_ranges: "dict[str | Strategy, tuple[float, float]] | None" = None, *, lr_points: int | None = None,
               lora_ranks: tuple[int, ...] | None = None, lora_alphas: tuple[float, ...] | None = None,
               lora_targets: tuple[str, ...] | None = None) -> tuple[Candidate, ...]:
    """Every model x method, each with its method's learning-rate range (`lr_ranges`, keyed by method
    name or strategy, overrides) and choices; `lr_points` and the LoRA family's ranks, alphas and
    target sets (None: each method's own) narrow every candidate's space alike."""
    if not models:
        raise SettingError("--models", "", "at least one model")
    if not strategies:
        raise SettingError("--strategies", "", "at least one strategy")
    ranges = {(k.value if isinstance(k, Strategy) else k): v for k, v in (lr_ranges or {}).items()}
    narrowed = {"lora_r": lora_ranks, "lora_alpha": lora_alphas, "lora_targets": lora_targets}
    out = []
    for model in models:
        for entry in strategies:
            m = method(entry)
            strategy = Strategy(m.strategy)
            choices = {k: (narrowed[k] if narrowed.get(k) is not None else v) for k, v in m.choices.items()}
            out.append(Candidate(model, strategy, ranges.get(m.name, m.lr_range),
                                 None if m.name == strategy.value else m.name,
                                 tuple((k, v) for k, v in m.fixed.items() if k != "strategy"), lr_points,
                                 tuple(choices.items())))
    for key, values in narrowed.items():  # checked even where no method searches it
        if values is not None:
            check_choice(key, tuple(values))
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
