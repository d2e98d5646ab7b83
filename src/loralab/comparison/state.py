"""A comparison under way (`Comparison`): what it is, its folder, its budget, its brackets, and what its pilots
scored, read from their run records; the configuration and folder of each pilot and final run.

A pilot at a rung of several seeds (`Bracket.seeds_at`) is one run per seed, the first in the pilot's own
folder; its score there is their mean.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from loralab.comparison.bracket import Bracket, Loss, Score
from loralab.comparison.budget import Budget
from loralab.comparison.config import CompareConfig
from loralab.comparison.methods import Method, label
from loralab.metrics import validation_loss
from loralab.runs.artifacts import RECORD, WEIGHTS, read_json
from loralab.runs.config import RunConfig
from loralab.runs.state import record_state
from loralab.sweeps.sweep import Executor


@dataclass
class Comparison:
    """A comparison under way: what it is, its folder, its budget and what it knows of the data."""

    config: CompareConfig
    out: Path
    budget: Budget
    metric: str
    train_examples: int
    valid_examples: int
    brackets: dict[str, Bracket]
    log: Callable[[str], None] = print
    progress: bool = False
    executor: Executor | None = None
    stopped: dict[str, str] = dataclasses.field(default_factory=dict)
    """Method -> why its bracket stopped early."""

    @property
    def pilot_examples(self) -> int:
        return min(self.config.pilot_valid, self.valid_examples)

    def records(self, method: str) -> PilotRecords:
        """One method's pilots as their run records hold them now, each record read once."""
        bracket = self.brackets[method]
        return PilotRecords(self._valid(method), lambda steps: self.pilot_seeds(bracket, steps), self.metric,
                            self.config.tie_break)

    def scored(self, method: str) -> tuple[Score, Loss | None]:
        """The pilot scores of one method's bracket and their validation losses (`PilotRecords.ranking`)."""
        return self.records(method).ranking

    def pilot_seeds(self, bracket: Bracket, steps: int) -> list[int | None]:
        """The seeds a pilot of `steps` trains with: None (the base seed, in the pilot's own folder), then base
        seed + 1, ... at a rung of several (`Bracket.seeds_at`)."""
        base = self.config.base.training.seed
        return [None] + [base + k for k in range(1, bracket.seeds_at(steps))]

    def _valid(self, method: str) -> Callable[[int, int, int | None], dict | None]:
        """A pilot's validation scores as its record holds them ({} when it failed), None when it has not run."""
        bracket = self.brackets[method]
        known: dict[tuple[int, int, int | None], dict | None] = {}

        def valid(index: int, steps: int, seed: int | None = None) -> dict | None:
            if (index, steps, seed) not in known:
                known[index, steps, seed] = read(index, steps, seed)
            return known[index, steps, seed]

        def read(index: int, steps: int, seed: int | None) -> dict | None:
            folder = self.out / bracket.folder(index, steps, seed)
            if not (folder / RECORD).exists():
                return None
            config = self.pilot_config(bracket.method, bracket.settings[index], steps, seed)
            if record_state(folder, config)[0] != "done":
                return None
            record = read_json(folder / RECORD)
            scores = record.get("valid") if record.get("status") == "completed" else None
            return scores if isinstance(scores, dict) else {}

        return valid

    def run_config(self, method: Method, settings: dict[str, Any]) -> RunConfig:
        return self.config.base.replace({**method.fixed, **settings})

    def pilot_config(self, method: Method, settings: dict[str, Any], steps: int, seed: int | None = None) -> RunConfig:
        """A pilot, as recommend's: `steps` steps on the first steps * batch examples, scored on the first
        `pilot_valid` validation examples (`seed`: another than the base seed, at a rung of several)."""
        config = self.run_config(method, settings)
        per_step = config.training.batch_size * config.training.grad_accum
        limit = min(self.train_examples, steps * per_step)
        training = dataclasses.replace(config.training, max_steps=steps, epochs=max(1.0, steps * per_step / limit),
                                       **({} if seed is None else {"seed": seed}))
        return dataclasses.replace(config, train_limit=limit, valid_limit=self.pilot_examples, training=training)

    def final_config(self, method: Method, settings: dict[str, Any], seed: int) -> RunConfig:
        config = self.run_config(method, settings)
        return dataclasses.replace(config, training=dataclasses.replace(config.training, seed=seed))

    def trained_final(self, method: Method, settings: dict[str, Any], seed: int) -> str | None:
        """The folder of a finished pilot that trained this final run step for step (`runs.rescore`): one of the
        last rung's seeds of a bracket whose last rung is the final run's length, on all the training data,
        its weights kept; None when there is none and the final run trains."""
        bracket = self.brackets[method.name]
        steps = bracket.steps[-1]
        if steps != self.budget.final_steps or settings not in bracket.settings:
            return None
        base = self.config.base.training.seed
        by_seed = {base if s is None else s: s for s in self.pilot_seeds(bracket, steps)}  # the run's seed -> folder's
        if seed not in by_seed:
            return None
        pilot_seed = by_seed[seed]
        pilot = self.pilot_config(method, settings, steps, pilot_seed)
        final = self.final_config(method, settings, seed)
        if pilot.train_limit != self.train_examples or not same_training(pilot, final):
            return None
        folder = bracket.folder(bracket.settings.index(settings), steps, pilot_seed)
        path = self.out / folder
        if not (path / RECORD).is_file() or record_state(path, pilot)[0] != "done":
            return None
        record = read_json(path / RECORD)
        if record.get("status") != "completed" or record.get("steps") != steps or \
                not (path / record.get("weights", WEIGHTS)).is_file():
            return None
        return folder

    def final_folder(self, method: Method, settings: dict[str, Any], seed: int) -> str:
        return f"finals/{method.name}/{label(settings)}/seed-{seed}"

    def seeds(self) -> list[int]:
        return [self.config.base.training.seed + i for i in range(self.config.seeds)]


def same_training(pilot: RunConfig, final: RunConfig) -> bool:
    """Whether a pilot that read `final`'s training data trains what `final` trains: the configurations differ
    at most in how the steps are given (a pilot's max_steps, a final run's epochs), the training-data limit
    and the validation examples scored. The caller checks the steps and the data."""
    training = dataclasses.replace(pilot.training, max_steps=final.training.max_steps, epochs=final.training.epochs)
    return dataclasses.replace(pilot, training=training, train_limit=final.train_limit,
                               valid_limit=final.valid_limit) == final


@dataclass(frozen=True)
class PilotRecords:
    """A method's pilot runs as their records hold them: `valid(index, steps, seed)` gives a run's validation
    scores ({} when it failed), None when it has not run. At a rung of several seeds a pilot's score is their
    mean, known once every seed has run (NaN when any diverged), and so is its loss."""

    valid: Callable[[int, int, int | None], dict | None]
    seeds_at: Callable[[int], list[int | None]]
    """steps -> the seeds a pilot of that many steps trains with (`Comparison.pilot_seeds`)."""
    metric: str
    tie_break: bool
    """Whether validation losses rank pilots that score alike (False in a folder planned before that rule)."""

    def _runs(self, index: int, steps: int) -> list[dict | None]:
        return [self.valid(index, steps, seed) for seed in self.seeds_at(steps)]

    def _value(self, scores: dict) -> float:
        value = scores.get(self.metric)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan

    def score(self, index: int, steps: int) -> float | None:
        runs = self._runs(index, steps)
        if any(scores is None for scores in runs):
            return None
        return sum(self._value(scores) for scores in runs) / len(runs)

    def loss(self, index: int, steps: int) -> float | None:
        losses = [validation_loss(scores or {}) for scores in self._runs(index, steps)]
        return None if any(v is None for v in losses) else sum(losses) / len(losses)

    @property
    def ranking(self) -> tuple[Score, Loss | None]:
        """(score, loss) as a bracket ranks pilots by them; no loss in a folder planned before losses broke ties."""
        return self.score, self.loss if self.tie_break else None

    def ran(self, index: int, steps: int, seed: int | None) -> bool:
        """Whether that one run of the pilot has finished (failed included)."""
        return self.valid(index, steps, seed) is not None

    def seeds(self, index: int, steps: int) -> list[float | None] | None:
        """Each seed's score at a rung of several seeds (None: a seed not run; NaN: it diverged); None at a
        rung of one seed."""
        runs = self._runs(index, steps)
        return None if len(runs) == 1 else [None if scores is None else self._value(scores) for scores in runs]
