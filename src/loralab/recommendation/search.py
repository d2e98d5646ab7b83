"""The recommend search: candidates that fit, then pilots by successive halving within a time budget.

1. Candidates (model x strategy) are screened for memory (`memory.py`): an estimate from parameter
   counts, then a one-step probe run, which also measures each candidate's step time.
2. Brackets of successive halving (`halving.py`): each bracket draws `bracket_size` settings (Optuna's
   TPE sampler, candidates taken in turn), trains each for r0 optimizer steps on the first r0 * batch
   training examples and scores it on the first `pilot_valid` validation examples; the best 1/eta go
   on to eta times the steps, and so on. A new pilot starts only while the seconds spent so far, the
   pilot's estimated cost and the reserve for the final run fit in the budget.
3. The winner (`verdict.py`) is trained once on all the training data (`train_final`) and scored on
   all the validation data; `driver.py` runs these steps in turn.

Every probe, pilot and final run is an ordinary run folder (`folder.py`). The Optuna study lives in
a journal file in the output folder, and the seconds spent in a ledger beside it (`ledger.py`), so
rerunning the same command resumes: finished pilots are read back, not redone, and a bracket cut
short goes on where it stopped. Several workers can share one study (`worker`); see
`loralab recommend --help`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from loralab.errors import LoralabError
from loralab.models import offline_environment
from loralab.recommendation.config import RecommendConfig
from loralab.recommendation.folder import (JOURNAL, check_plan, final_folder, ledger_path, lock_worker, pilot_folder,
                                      probe_folder)
from loralab.recommendation.halving import BRACKET, BracketPruner, rung_steps
from loralab.recommendation.ledger import Ledger
from loralab.recommendation.memory import (Fit, batch_tokens, estimate_mb, fits, parameter_counts, predicted_peak,
                                          resident_mb)
from loralab.recommendation.space import Candidate, describe
from loralab.recommendation.verdict import Pilot
from loralab.reports.rows import higher_is_better
from loralab.runs import run
from loralab.runs.artifacts import RECORD, read_json
from loralab.runs.config import RunConfig
from loralab.runs.state import record_state, rerun
from loralab.tasks import get_task, infer_task

STUDY = "recommend"


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

    def close(self) -> None:
        """Let another process run as this worker."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.config.candidates if self.fits[c.name].excluded is None]

    def final_steps(self) -> int:
        t = self.config.base.training
        return max(1, math.ceil(math.ceil(math.ceil(self.train_examples / t.batch_size) / t.grad_accum) * t.epochs))

    def step_time(self, name: str) -> float:
        return self.ledger.step_cost(name) or 0.0

    def final_reserve(self) -> float:
        """Seconds kept for the final run: the slowest candidate's steps on all the data, plus scoring."""
        overhead = self.ledger.overhead("pilot") or 2 * (self.ledger.overhead("probe") or 0.0)
        scoring = overhead * max(1.0, self.valid_examples / self.config.pilot_valid)
        return max(self.step_time(c.name) for c in self.kept) * self.final_steps() + scoring

    def pilot_cost(self, name: str, steps: int) -> float:
        overhead = self.ledger.overhead("pilot") or 2 * (self.ledger.overhead("probe") or 0.0)
        return self.step_time(name) * steps + overhead

    def expected_cost(self, name: str) -> float | None:
        """The budget-clock seconds a full run of this candidate is expected to cost (its median cost
        per step over all its runs, times the final run's steps)."""
        per_step = self.ledger.step_cost(name)
        return None if per_step is None else per_step * self.final_steps()


def _timed(search: Search, config: RunConfig, folder: Path, kind: str, candidate: str) -> dict[str, Any]:
    """Run `config` into `folder`, or read it back when it is already there and finished."""
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
    wall, cpu = time.perf_counter(), time.process_time()
    record = rerun(run, config, folder, progress=search.progress, log=lambda _: None)
    search.ledger.add(key, kind, wall=time.perf_counter() - wall, cpu=time.process_time() - cpu,
                      train_wall=float(record.get("train_seconds", 0.0)), steps=int(record.get("steps", 0)),
                      candidate=candidate)
    return record


def _screen(search: Search) -> None:
    """Memory verdicts for every candidate: parameter counts, then a one-step probe for those left."""
    config, limit = search.config, search.config.memory_mb
    for candidate in config.candidates:
        trainable, total = search.counts[candidate.name]
        estimate = estimate_mb(trainable, total)
        fit = Fit(candidate.name, trainable, total, round(estimate, 1))
        if not fits(estimate, limit):
            fit = dataclasses.replace(fit, excluded=f"parameters alone need {estimate:,.0f} MB > {limit:,.0f} MB")
        else:
            low, high = candidate.lr_range
            probe = dataclasses.replace(candidate.config(config.base, {"lr": math.sqrt(low * high)}), valid=None,
                                        train_limit=config.base.training.batch_size * config.base.training.grad_accum,
                                        training=dataclasses.replace(config.base.training, lr=math.sqrt(low * high),
                                                                     max_steps=1, epochs=1.0))
            before = resident_mb() if limit is not None else None  # the weights the probe loads come on top
            record = _timed(search, probe, probe_folder(search.out, config.worker, candidate.name), "probe",
                            candidate.name)
            peak = float(record["peak_memory_mb"])
            fit = dataclasses.replace(fit, probe_mb=round(peak, 1))
            if not fits(peak, limit):
                fit = dataclasses.replace(fit, excluded=f"a one-step probe peaked at {peak:,.0f} MB > {limit:,.0f} MB")
            elif before is not None and record.get("device") == "cpu":  # memory.py: the run's largest batch
                tokens = batch_tokens(dataclasses.replace(probe, train_limit=config.base.train_limit))
                predicted = predicted_peak(peak, before + 4 * total / 2**20, tokens, candidate.strategy.value)
                if predicted is not None:
                    fit = dataclasses.replace(fit, predicted_mb=round(predicted, 1))
                    if not fits(predicted, limit):
                        fit = dataclasses.replace(fit, excluded=f"its largest batch is predicted to peak at "
                                                                f"{predicted:,.0f} MB > {limit:,.0f} MB")
        search.fits[candidate.name] = fit
        search.log(f"candidate {candidate.name}: {trainable:,} of {total:,} parameters train, estimate "
                   f"{estimate:,.0f} MB" + (f", probe {fit.probe_mb:,.0f} MB" if fit.probe_mb is not None else "")
                   + (f", {fit.predicted_mb:,.0f} MB predicted at its largest batch" if fit.predicted_mb else "")
                   + (f"; excluded: {fit.excluded}" if fit.excluded else ""))


def _open_study(config: RecommendConfig, out: Path, direction: str) -> optuna.Study:
    storage: Any
    if config.storage and "://" in config.storage:
        storage = config.storage
    else:
        storage = JournalStorage(JournalFileBackend(str(config.storage or out / JOURNAL)))
    sampler = optuna.samplers.TPESampler(seed=config.seed, constant_liar=True)
    return optuna.create_study(storage=storage, study_name=STUDY, direction=direction, sampler=sampler,
                               pruner=BracketPruner(config.eta), load_if_exists=True)


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


def _my_brackets(search: Search) -> dict[str, list[optuna.trial.FrozenTrial]]:
    out: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in search.study.get_trials(deepcopy=False):
        if trial.user_attrs.get("worker") == search.config.worker and BRACKET in trial.user_attrs:
            out.setdefault(trial.user_attrs[BRACKET], []).append(trial)
    return out


def _finished_brackets(search: Search) -> int:
    running = optuna.trial.TrialState.RUNNING
    return sum(1 for trials in _my_brackets(search).values() if not any(t.state == running for t in trials))


def _start_bracket(search: Search) -> str | None:
    """This worker's unfinished bracket (filled up to its size), or a new one; None when nothing fits."""
    kept = search.kept
    if not kept:
        return None
    size = search.config.bracket_size or 2 * len(kept)
    brackets = _my_brackets(search)
    open_ = [b for b, trials in brackets.items() if any(t.state == optuna.trial.TrialState.RUNNING for t in trials)]
    bracket = open_[0] if open_ else f"{search.config.worker}-{len(brackets)}"
    offset = int(bracket.rsplit("-", 1)[1])  # each bracket starts the turn of candidates one further
    for i in range(len(brackets.get(bracket, [])), size):
        candidate = kept[(i + offset) % len(kept)]
        trial = search.study.ask()
        for key, value in ((BRACKET, bracket), ("worker", search.config.worker), ("candidate", candidate.name)):
            trial.set_user_attr(key, value)
        trial.set_user_attr("settings", candidate.suggest(trial))
    return bracket


def _value(search: Search, record: dict[str, Any]) -> float:
    """A pilot's score; NaN when it diverged or went over the memory limit, so the pruner drops it."""
    if record.get("status") != "completed" or not fits(float(record["peak_memory_mb"]), search.config.memory_mb):
        return math.nan
    value = record.get("valid", {}).get(search.metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def _run_bracket(search: Search, bracket: str) -> bool:
    """Run a bracket's rungs; False when the budget stopped it."""
    steps_per_rung = rung_steps(search.config.min_steps, search.config.eta, search.config.rungs)
    running = optuna.trial.TrialState.RUNNING
    for rung, steps in enumerate(steps_per_rung):
        alive = [t for t in _my_brackets(search)[bracket] if t.state == running]
        for frozen in alive:
            if steps in frozen.intermediate_values:
                continue
            candidate, settings = _candidate(search, frozen), frozen.user_attrs["settings"]
            folder = pilot_folder(search.out, frozen.number, candidate.name, steps)
            cost = search.pilot_cost(candidate.name, steps)
            search.ledger.settle()
            if not (folder / RECORD).exists() and search.ledger.spent() + cost + search.final_reserve() > search.config.budget_seconds:
                search.stopped = (f"budget: a {steps}-step pilot of {candidate.name} (about {cost:.0f} s) and the "
                                  f"final run (about {search.final_reserve():.0f} s) no longer fit in what is left "
                                  f"({search.config.budget_seconds - search.ledger.spent():.0f} s)")
                return False
            record = _timed(search, pilot_config(search, candidate, settings, steps), folder, "pilot", candidate.name)
            value = _value(search, record)
            optuna.trial.Trial(search.study, frozen._trial_id).report(value, steps)
            search.log(f"[{search.ledger.spent():6.0f} s] trial {frozen.number} {candidate.name} "
                       f"({describe(settings)}) at {steps} steps: {search.metric} {value:.4f}")
        # Judged only once every trial of the bracket has reported this rung (see halving.py).
        for frozen in [t for t in _my_brackets(search)[bracket] if t.state == running]:
            trial = optuna.trial.Trial(search.study, frozen._trial_id)
            value = frozen.intermediate_values.get(steps, math.nan)
            if rung < len(steps_per_rung) - 1:
                if trial.should_prune():
                    search.study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
            elif math.isnan(value):
                search.study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
            else:
                search.study.tell(frozen.number, value)
    return True


def run_brackets(search: Search) -> None:
    """Screen the candidates, then run brackets until the budget, the bracket count or the memory limit stops them."""
    config = search.config
    _screen(search)
    while search.stopped is None:
        if config.brackets is not None and _finished_brackets(search) >= config.brackets:
            search.stopped = f"{config.brackets} bracket(s) done"
            break
        bracket = _start_bracket(search)
        if bracket is None:
            search.stopped = "no candidate fits the memory limit"
            break
        if not _run_bracket(search, bracket):
            break
    search.ledger.settle()
    search.log(f"search stopped: {search.stopped}")


def pilots(search: Search) -> list[Pilot]:
    """Every trial of the study (every worker's), with the median step time of its pilots' records."""
    out = []
    for trial in search.study.get_trials(deepcopy=False):
        if "candidate" not in trial.user_attrs:
            continue
        candidate = _candidate(search, trial)
        times = []
        for steps in trial.intermediate_values:
            path = pilot_folder(search.out, trial.number, candidate.name, steps) / RECORD
            if path.exists():
                times.append(float(read_json(path).get("median_step_seconds", 0.0)))
        out.append(Pilot(trial.number, candidate.name, candidate.strategy.value, dict(trial.user_attrs["settings"]),
                         {int(k): float(v) for k, v in trial.intermediate_values.items()}, trial.state.name.lower(),
                         statistics.median(times) if times else None))
    return out


def train_final(search: Search, winner: Pilot) -> dict[str, Any]:
    """Train the winner's settings on all the data (or read its finished run back); its run record."""
    candidate = next(c for c in search.config.candidates if c.name == winner.candidate)
    search.log(f"winner: trial {winner.number} {candidate.name} ({describe(winner.settings)}); "
               f"training it on all {search.train_examples} examples")
    return _timed(search, candidate.config(search.config.base, winner.settings),
                  final_folder(search.out, winner.number, candidate.name), "final", candidate.name)


def open_search(config: RecommendConfig, out: str | Path, *, log: Callable[[str], None] = print,
                progress: bool = False) -> Search:
    """Check the data and models, then open (or resume) the search in `out`; bad input writes nothing."""
    start = (time.perf_counter(), time.process_time())  # counting parameters is part of the search's cost
    out, base = Path(out), config.base
    offline_environment(base.offline)
    task = get_task(infer_task(base.train, base.task))
    train = task.read(base.train, base.task, limit=base.train_limit if base.train_sample_seed is None else None)
    valid = task.read(base.valid, base.task, limit=base.valid_limit)
    task.check_labels(valid, task.label_space(train, source=base.train), source=base.valid)
    counts = {c.name: parameter_counts(c, base) for c in config.candidates}  # also: every model loads
    out.mkdir(parents=True, exist_ok=True)
    check_plan(out, config.plan())
    lock = lock_worker(out, config.worker)
    metric = task.metrics[0]
    study = _open_study(config, out, "maximize" if higher_is_better(metric) else "minimize")
    return Search(config, out, study, Ledger(ledger_path(out, config.worker), config.clock, start), metric,
                  min(len(train), base.train_limit or len(train)), len(valid), counts, log=log, progress=progress,
                  lock=lock)
