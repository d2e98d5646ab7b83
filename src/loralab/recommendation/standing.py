"""Where a recommend search stands (`Search`), and what one of its runs is: its cost in the ledger, a
pilot's config and score, and every trial as the verdict sees it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

import optuna

from loralab.errors import LoralabError
from loralab.recommendation.config import RecommendConfig
from loralab.recommendation.folder import pilot_folder
from loralab.recommendation.halving import LOSS, rung_steps
from loralab.recommendation.ledger import Ledger
from loralab.recommendation.memory import Fit, fits
from loralab.recommendation.space import Candidate
from loralab.recommendation.verdict import Pilot, choose
from loralab.runs import run
from loralab.runs.artifacts import RECORD, read_json
from loralab.runs.config import RunConfig
from loralab.runs.state import record_state, rerun

Runner = Callable[[RunConfig, Path], dict[str, Any]]
"""Train a run config into a folder and return its run record (a test passes a fake one)."""


@dataclass
class Search:
    """Where a search stands: what it is, its study and ledger, and what it learned of each candidate."""

    config: RecommendConfig
    out: Path
    study: optuna.Study
    ledger: Ledger
    metric: str
    train_examples: int
    valid_examples: int
    counts: dict[str, tuple[int, int]]
    """(trainable, total) parameters per candidate."""
    fits: dict[str, Fit] = field(default_factory=dict)
    log: Callable[[str], None] = print
    progress: bool = False
    stopped: str | None = None
    lock: IO[str] | None = None
    """The open lock file that keeps a second process from running as the same worker."""
    runner: Runner | None = None
    """None: train for real (`runs.run`)."""
    shares: dict[str, list[float]] = field(default_factory=dict)
    """Candidate -> the share of the budget it was given at each of its turns."""
    split: dict[str, Any] | None = None
    """The first split of the budget: the final run's reserve and each candidate's share."""

    def close(self) -> None:
        """Let another process run as this worker."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.config.candidates if self.fits[c.name].excluded is None]

    @property
    def rungs(self) -> tuple[int, ...]:
        return rung_steps(self.config.min_steps, self.config.eta, self.config.rungs)

    def final_steps(self) -> int:
        """Optimizer steps of one pass of the training settings over all the training data."""
        t = self.config.base.training
        return max(1, math.ceil(math.ceil(math.ceil(self.train_examples / t.batch_size) / t.grad_accum) * t.epochs))

    def step_time(self, name: str) -> float:
        return self.ledger.step_cost(name) or 0.0

    def final_cost(self, name: str, pilot_steps: int = 0) -> float:
        """What the final run of this candidate is expected to cost: its cost per step times the steps
        of a final run (all the data, or the longest pilot so far or about to run, whichever is more),
        plus loading and scoring on all the validation data."""
        overhead = self.ledger.overhead("pilot") or 2 * (self.ledger.overhead("probe") or 0.0)
        scoring = overhead * max(1.0, self.valid_examples / self.config.pilot_valid)
        longest = max([e["steps"] for e in self.ledger.entries.values() if e["kind"] == "pilot"] + [pilot_steps])
        return self.step_time(name) * max(self.final_steps(), longest) + scoring

    def final_reserve(self, pilot_steps: int = 0) -> float:
        """Seconds kept for the final run while any candidate may still win: the costliest one's."""
        return max(self.final_cost(c.name, pilot_steps) for c in self.kept)

    def pilot_cost(self, name: str, steps: int) -> float:
        overhead = self.ledger.overhead("pilot") or 2 * (self.ledger.overhead("probe") or 0.0)
        return self.step_time(name) * steps + overhead

    def expected_cost(self, name: str) -> float | None:
        """The budget-clock seconds a full run of this candidate is expected to cost (its median cost
        per step over all its runs, times the final run's steps)."""
        per_step = self.ledger.step_cost(name)
        return None if per_step is None else per_step * self.final_steps()

    def left(self) -> float:
        self.ledger.settle()
        return self.config.budget_seconds - self.ledger.spent()


def _real_run(config: RunConfig, folder: Path, search: Search) -> dict[str, Any]:
    return rerun(run, config, folder, progress=search.progress, log=lambda _: None)


def timed(search: Search, config: RunConfig, folder: Path, kind: str, candidate: str) -> dict[str, Any]:
    """Run `config` into `folder`, or read it back when it is already there and finished; its cost
    (the run's whole wall and CPU time, loading and scoring included) goes into the ledger."""
    state, why = record_state(folder, config)
    key = search.ledger.key(folder)
    if state == "done":
        record = read_json(folder / RECORD)
        if key not in search.ledger.entries:  # killed between the run's end and its ledger line
            train = float(record.get("train_seconds", 0.0))
            search.ledger.add(key, kind, wall=train, cpu=train, train_wall=train, steps=int(record.get("steps", 0)),
                              candidate=candidate)
        return record
    if why != "not run yet":
        search.log(f"{folder}: redoing it ({why})")
    wall, cpu = search.ledger.now()
    record = search.runner(config, folder) if search.runner else _real_run(config, folder, search)
    end = search.ledger.now()
    search.ledger.add(key, kind, wall=end[0] - wall, cpu=end[1] - cpu,
                      train_wall=float(record.get("train_seconds", 0.0)), steps=int(record.get("steps", 0)),
                      candidate=candidate, step_wall=record.get("median_step_seconds"))
    return record


def _candidate(search: Search, trial: optuna.trial.FrozenTrial) -> Candidate:
    name = trial.user_attrs["candidate"]
    for candidate in search.config.candidates:
        if candidate.name == name:
            return candidate
    raise LoralabError(f"the study holds trial {trial.number} of candidate {name!r}, which this search does not plan")


def pilot_config(search: Search, candidate: Candidate, settings: dict[str, Any], steps: int) -> RunConfig:
    """A pilot: `steps` optimizer steps on the first steps * batch examples, scored on the first `pilot_valid`."""
    base = search.config.base
    per_step = base.training.batch_size * base.training.grad_accum
    config = candidate.config(base, settings)
    valid_limit = min(search.config.pilot_valid, base.valid_limit or search.config.pilot_valid)
    limit = min(search.train_examples, steps * per_step)
    return dataclasses.replace(config, train_limit=limit, valid_limit=valid_limit,
                               training=dataclasses.replace(config.training, max_steps=steps,
                                                            epochs=max(1.0, steps * per_step / limit)))


def pilot_value(search: Search, record: dict[str, Any]) -> float:
    """A pilot's score; NaN when it diverged or went over the memory limit, so the pruner drops it."""
    if record.get("status") != "completed" or not fits(float(record["peak_memory_mb"]), search.config.memory_mb):
        return math.nan
    value = record.get("valid", {}).get(search.metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def pilots(search: Search, times: bool = True) -> list[Pilot]:
    """Every trial of the study (every worker's), with the median step time of its pilots' records
    (`times` off: without, so that no record is read)."""
    out = []
    for trial in search.study.get_trials(deepcopy=False):
        if "candidate" not in trial.user_attrs or "settings" not in trial.user_attrs:
            continue  # no pilot's, or a pilot's cut short by a kill before its settings were drawn
        candidate = _candidate(search, trial)
        steps_seconds = []
        for steps in trial.intermediate_values if times else ():
            path = pilot_folder(search.out, trial.number, candidate.name, steps) / RECORD
            if path.exists():
                steps_seconds.append(float(read_json(path).get("median_step_seconds", 0.0)))
        out.append(Pilot(trial.number, candidate.name, candidate.strategy.value, dict(trial.user_attrs["settings"]),
                         {int(k): float(v) for k, v in trial.intermediate_values.items()}, trial.state.name.lower(),
                         statistics.median(steps_seconds) if steps_seconds else None,
                         {int(k[len(LOSS):]): float(v) for k, v in trial.user_attrs.items() if k.startswith(LOSS)}))
    return out


def leader(search: Search) -> str | None:
    """The candidate whose pilot the verdict would pick now (None: no pilot has a score yet)."""
    verdict = choose(pilots(search, times=False), search.metric,
                     min(search.config.pilot_valid, search.valid_examples), lambda p: None)
    return verdict.winner.candidate if verdict else None
