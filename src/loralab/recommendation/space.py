"""What a recommendation searches over: candidates (a model with a strategy) and each one's settings.

A candidate's learning rate is searched on a log scale within a range that fits its strategy: the
fewer and smaller the numbers that train, the larger the step they need. LoRA's B starts at zero and
its update is scaled by alpha / r, so its useful rates sit about an order of magnitude above full
fine-tuning's (Hu et al. 2021 train RoBERTa's LoRA at 2e-4 to 5e-4; RoBERTa was fully fine-tuned at
1e-5 to 3e-5, Liu et al. 2019; the seed's LoRA at 1e-5 learned nothing here,
`experiments/results/seed-blog/`). LoRA's range starts at 1e-4, the lowest rate those recipes use
(QLoRA, Dettmers et al. 2023, trains its adapters at 1e-4 to 2e-4): below it B grows too slowly from
zero for a pilot of tens of steps to show anything, which is how the seed's mistake would come back.
LoRA also searches its rank r and alpha.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.settings import SETTINGS, RunConfig
from loralab.strategies import Strategy, StrategyConfig
from loralab.validate import SettingError, number

# strategy -> (lowest, highest) peak learning rate searched, log-uniformly.
LR_RANGES: dict[Strategy, tuple[float, float]] = {
    Strategy.FULL: (1e-5, 2e-4),
    Strategy.ATTENTION: (2e-5, 5e-4),
    Strategy.QV: (2e-5, 5e-4),
    Strategy.LORA: (1e-4, 5e-3),
    Strategy.SUBSPACE: (1e-3, 1e-1),
}
LORA_RANKS = (4, 8, 16)
LORA_ALPHAS = (8, 16, 32, 64)
DEFAULT_STRATEGIES = (Strategy.FULL, Strategy.ATTENTION, Strategy.QV, Strategy.LORA)


def model_slug(model: str) -> str:
    """A model's name as a folder name: its last path part ('minilm', 'tiny-bert')."""
    return Path(model.rstrip("/")).name or "model"


@dataclass(frozen=True)
class Candidate:
    """One model with one strategy, and the learning-rate range searched for it."""

    model: str
    """A model folder, 'minilm' or a hub name, as `RunConfig.model`."""
    strategy: Strategy
    """What trains."""
    lr_range: tuple[float, float]
    """(lowest, highest) peak learning rate searched, log-uniformly."""

    def __post_init__(self):
        object.__setattr__(self, "strategy", Strategy.parse(self.strategy))
        low, high = self.lr_range
        number("lr_range low", low, low=0, low_open=True)
        number("lr_range high", high, low=low)

    @property
    def name(self) -> str:
        return f"{model_slug(self.model)}-{self.strategy.value}"

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw this candidate's settings from an Optuna trial; parameter names carry the candidate's
        name, so each candidate's sampler history is its own."""
        low, high = self.lr_range
        settings = {"lr": trial.suggest_float(f"{self.name}.lr", low, high, log=True) if low < high else low}
        if self.strategy is Strategy.LORA:
            settings["lora_r"] = trial.suggest_categorical(f"{self.name}.lora_r", LORA_RANKS)
            settings["lora_alpha"] = trial.suggest_categorical(f"{self.name}.lora_alpha", LORA_ALPHAS)
        return settings

    def config(self, base: RunConfig, settings: dict[str, Any]) -> RunConfig:
        """`base` with this candidate's model and strategy and the drawn `settings`, named by their keys in
        the settings table (`lr`, `lora_r`, ...)."""
        strategy = StrategyConfig(strategy=self.strategy, lora=base.strategy.lora, subspace=base.strategy.subspace)
        return dataclasses.replace(base, model=self.model, strategy=strategy).replace(settings)


def candidates(models: tuple[str, ...], strategies: tuple[Strategy, ...],
               lr_ranges: dict[Strategy, tuple[float, float]] | None = None) -> tuple[Candidate, ...]:
    """Every model x strategy, each with its strategy's learning-rate range (`lr_ranges` overrides)."""
    if not models:
        raise SettingError("--models", "", "at least one model")
    if not strategies:
        raise SettingError("--strategies", "", "at least one strategy")
    ranges = {**LR_RANGES, **(lr_ranges or {})}
    out = tuple(Candidate(model, Strategy.parse(s), ranges[Strategy.parse(s)]) for model in models for s in strategies)
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise SettingError("--models", ",".join(models), "models with different folder names")
    return out


def describe(settings: dict[str, Any]) -> str:
    """Settings as a short text, each by its report label: 'lr 3.2e-04, r 8, alpha 32'."""
    parts = []
    for key, value in settings.items():
        setting = SETTINGS.by_key.get(key)
        label = setting.report_label if setting else key
        parts.append(f"{label} {value:.1e}" if key == "lr" else f"{label} {value:g}")
    return ", ".join(parts)
