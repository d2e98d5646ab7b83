"""The recommend search: candidates that fit, pilots by successive halving within a time budget, the winner's full run.

1. Candidates (model x strategy) are screened for memory (`memory.py`): an estimate from parameter
   counts, then a one-step probe run, which also measures each candidate's step time.
2. Brackets of successive halving (`halving.py`): each bracket draws `bracket_size` settings (Optuna's
   TPE sampler, candidates taken in turn), trains each for r0 optimizer steps on the first r0 * batch
   training examples and scores it on the first `pilot_valid` validation examples; the best 1/eta go
   on to eta times the steps, and so on. A new pilot starts only while the seconds spent so far, the
   pilot's estimated cost and the reserve for the final run fit in the budget.
3. The winner is the best pilot at the largest step count any pilot reached; it is trained once on
   all the training data (`final/t<trial>-<candidate>/`) and scored on all the validation data.

Every probe, pilot and final run is an ordinary run folder. The Optuna study lives in a journal file
in the output folder, and the seconds spent in a ledger beside it, so rerunning the same command
resumes: finished pilots are read back, not redone, and a bracket cut short goes on where it stopped.
Several workers can share one study (`worker`); see `loralab recommend --help`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna

from loralab.errors import LoralabError
from loralab.recommend.halving import BRACKET, BracketPruner, rung_steps
from loralab.recommend.memory import Fit, estimate_mb, fits, parameter_counts
from loralab.recommend.space import Candidate
from loralab.reports.rows import higher_is_better
from loralab.runs import run
from loralab.runs.artifacts import RECORD, read_json, write_json
from loralab.runs.config import RunConfig
from loralab.runs.state import record_state, rerun
from loralab.tasks import get_task, infer_task
from loralab.validate import number

STUDY = "recommend"
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_budget(text: str) -> float:
    """'30m', '1h30m', '1590s', '1590' (seconds) -> seconds."""
    import re

    text = str(text).strip().lower()
    parts = re.findall(r"([0-9]*\.?[0-9]+)\s*([smh]?)", text)
    if not parts or re.sub(r"([0-9]*\.?[0-9]+)\s*([smh]?)", "", text).strip():
        raise LoralabError(f"invalid --budget {text!r}: expected a duration such as 30m, 1h30m or 1590s")
    seconds = sum(float(n) * _SECONDS[unit or "s"] for n, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise LoralabError(f"invalid --budget {text!r}: expected a positive duration")
    return seconds


@dataclass(frozen=True)
class RecommendConfig:
    """A recommend search: the data and training defaults, what to try, and what it may spend."""

    base: RunConfig
    """Data, task, limits, device and training defaults (batch size, max length, epochs, seed) of every run."""
    candidates: tuple[Candidate, ...]
    """Model x strategy pairs, each with its learning-rate range."""
    budget_seconds: float
    """Wall-clock seconds the search may spend on probes, pilots and the final run together."""
    memory_mb: float | None = None
    """Peak memory a run may use (None: no limit)."""
    min_steps: int = 16
    """Optimizer steps of the first rung (r0)."""
    eta: int = 3
    """Each rung keeps the best 1/eta and gives them eta times the steps."""
    rungs: int = 3
    """Rungs per bracket: r0, r0 * eta, ..., r0 * eta**(rungs - 1) steps."""
    bracket_size: int | None = None
    """Settings drawn per bracket (None: twice the number of candidates that fit)."""
    pilot_valid: int = 200
    """Validation examples pilots are scored on (the first ones of the file)."""
    seed: int = 0
    """Seed of the sampler (each run's own seed is base.training.seed)."""
    storage: str | None = None
    """Optuna storage: an SQLAlchemy URL (sqlite:///..., postgresql://...) or a journal file's path
    (None: `study.journal` in the output folder)."""
    worker: str = "main"
    """This process's name among several sharing one study; only 'main' trains the winner."""
    clock: str = "wall"
    """What the budget counts: 'wall' seconds, or 'cpu' seconds of this process (steady on a shared CPU)."""
    brackets: int | None = None
    """Stop after this many brackets of this worker even if budget is left (None: only the budget stops it)."""

    def __post_init__(self):
        number("budget", self.budget_seconds, low=0, low_open=True)
        number("memory", self.memory_mb, low=0, low_open=True, optional=True)
        number("min_steps", self.min_steps, integer=True, low=1)
        number("eta", self.eta, integer=True, low=2)
        number("rungs", self.rungs, integer=True, low=1, high=8)
        number("bracket_size", self.bracket_size, integer=True, low=1, optional=True)
        number("pilot_valid", self.pilot_valid, integer=True, low=1)
        number("seed", self.seed, integer=True, low=0, high=2**31 - 1)
        number("brackets", self.brackets, integer=True, low=1, optional=True)
        if self.clock not in ("wall", "cpu"):
            raise LoralabError(f"invalid --budget-clock {self.clock!r}: expected wall or cpu")
        if not self.candidates:
            raise LoralabError("recommend needs at least one candidate (model x strategy)")
        if not self.base.valid:
            raise LoralabError("recommend needs a validation file (--valid): pilots are compared on it")
        if not isinstance(self.worker, str) or not self.worker.replace("-", "").replace("_", "").isalnum():
            raise LoralabError(f"invalid --worker {self.worker!r}: expected letters, digits, - and _")

    def plan(self) -> dict[str, Any]:
        """What a resumed search must share with the one it continues (the budget may grow)."""
        return json.loads(json.dumps({
            "base": self.base.to_dict(), "candidates": [[c.model, c.strategy.value, list(c.lr_range)]
                                                        for c in self.candidates],
            "memory_mb": self.memory_mb, "min_steps": self.min_steps, "eta": self.eta, "rungs": self.rungs,
            "bracket_size": self.bracket_size, "pilot_valid": self.pilot_valid, "seed": self.seed,
            "clock": self.clock}))


class Ledger:
    """What each probe, pilot and final run cost, one JSON line per run folder (relative to the
    search's folder, so the folder may move), so that a resumed search knows what it already spent.

    Costs are kept on two clocks: wall seconds, and the process's CPU seconds (`time.process_time`),
    which a CPU shared with other jobs does not inflate; `clock` says which one the budget counts.
    """

    def __init__(self, path: Path, clock: str = "wall", start: tuple[float, float] | None = None):
        self.path, self.clock = path, clock
        self.entries: dict[str, dict[str, Any]] = {}
        # What this process spends outside the runs (the study, the sampler, counting parameters) is
        # charged too, as one entry per session, rewritten by `settle`.
        self.session = f"search:{time.time_ns()}"
        self.start, self.logged = start or (time.perf_counter(), time.process_time()), [0.0, 0.0]
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by a kill: its run is redone or re-read
                        continue
                    self.entries[entry["folder"]] = entry

    def key(self, folder: Path) -> str:
        return folder.relative_to(self.path.parent).as_posix()

    def add(self, key: str, kind: str, *, wall: float, cpu: float, train_wall: float = 0.0, steps: int = 0,
            candidate: str | None = None) -> None:
        entry = {"folder": key, "kind": kind, "candidate": candidate, "seconds": round(wall, 3),
                 "cpu_seconds": round(cpu, 3), "train_seconds": round(train_wall, 3), "steps": steps}
        self.entries[key] = entry
        if kind != "search":
            self.logged[0] += wall
            self.logged[1] += cpu
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def settle(self) -> None:
        """Charge what this process spent outside the runs since it started."""
        wall = time.perf_counter() - self.start[0] - self.logged[0]
        cpu = time.process_time() - self.start[1] - self.logged[1]
        self.add(self.session, "search", wall=max(0.0, wall), cpu=max(0.0, cpu))

    def cost(self, entry: dict[str, Any]) -> float:
        return float(entry["cpu_seconds" if self.clock == "cpu" else "seconds"])

    def spent(self, kind: str | None = None) -> float:
        return sum(self.cost(e) for e in self.entries.values() if kind is None or e["kind"] == kind)

    def _training_share(self, entry: dict[str, Any]) -> float:
        """The share of a run's cost that went into its training steps, by wall time."""
        return min(1.0, entry["train_seconds"] / entry["seconds"]) if entry["seconds"] > 0 else 0.0

    def step_cost(self, candidate: str) -> float | None:
        """A candidate's median cost per optimizer step, on the budget's clock."""
        values = [self.cost(e) * self._training_share(e) / e["steps"] for e in self.entries.values()
                  if e.get("candidate") == candidate and e.get("steps")]
        return statistics.median(values) if values else None

    def overhead(self, kind: str) -> float | None:
        """The largest cost a run of this kind spent outside its training steps (loading, scoring)."""
        values = [self.cost(e) * (1.0 - self._training_share(e)) for e in self.entries.values() if e["kind"] == kind]
        return max(values) if values else None


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
    lock: Any = None
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
            record = _timed(search, probe, search.out / "probes" / config.worker / candidate.name, "probe",
                            candidate.name)
            peak = float(record["peak_memory_mb"])
            fit = dataclasses.replace(fit, probe_mb=round(peak, 1))
            if not fits(peak, limit):
                fit = dataclasses.replace(fit, excluded=f"a one-step probe peaked at {peak:,.0f} MB > {limit:,.0f} MB")
        search.fits[candidate.name] = fit
        search.log(f"candidate {candidate.name}: {trainable:,} of {total:,} parameters train, estimate "
                   f"{estimate:,.0f} MB" + (f", probe {fit.probe_mb:,.0f} MB" if fit.probe_mb is not None else "")
                   + (f"; excluded: {fit.excluded}" if fit.excluded else ""))


def _open_study(config: RecommendConfig, out: Path, direction: str) -> optuna.Study:
    storage: Any
    if config.storage and "://" in config.storage:
        storage = config.storage
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(config.storage or out / "study.journal")))
    sampler = optuna.samplers.TPESampler(seed=config.seed, constant_liar=True)
    return optuna.create_study(storage=storage, study_name=STUDY, direction=direction, sampler=sampler,
                               pruner=BracketPruner(config.eta), load_if_exists=True)


def _candidate(search: Search, trial: optuna.trial.FrozenTrial) -> Candidate:
    name = trial.user_attrs["candidate"]
    for candidate in search.config.candidates:
        if candidate.name == name:
            return candidate
    raise LoralabError(f"the study holds trial {trial.number} of candidate {name!r}, which this search does not plan")


def pilot_folder(out: Path, number_: int, candidate: str, steps: int) -> Path:
    return out / "pilots" / f"t{number_:03d}-{candidate}" / f"steps-{steps}"


def final_folder(out: Path, winner: "Pilot") -> Path:
    """The winner's full run; named for its trial, so a search resumed with more budget that finds
    another winner keeps the earlier one's run beside the new one."""
    return out / "final" / f"t{winner.number:03d}-{winner.candidate}"


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
                       f"({_settings_text(settings)}) at {steps} steps: {search.metric} {value:.4f}")
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


def _settings_text(settings: dict[str, Any]) -> str:
    from loralab.recommend.space import describe

    return describe(settings)


@dataclass(frozen=True)
class Pilot:
    """One trial as the report sees it: its candidate, settings, score at each step and cost."""

    number: int
    candidate: str
    strategy: str
    settings: dict[str, Any]
    values: dict[int, float]
    state: str
    step_seconds: float | None
    """Median step time measured in its pilots."""


def pilots(search: Search) -> list[Pilot]:
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


def sampling_se(value: float, n: int) -> float:
    """Standard error of a mean over n examples of a score in [0, 1] (MAP@3, accuracy): at most
    sqrt(m (1 - m) / n), the bound reached when every example scores 0 or 1; other scores: 1 / sqrt(n)."""
    if 0.0 <= value <= 1.0:
        return math.sqrt(max(value * (1.0 - value), 1e-12) / n)
    return 1.0 / math.sqrt(n)


Comparison = tuple[Pilot, float, float, bool]
"""(pilot, its difference from the winner, the noise threshold, within noise)."""


@dataclass(frozen=True)
class Verdict:
    """The winner among the pilots and how it compares with the others at each step count it reached."""

    winner: Pilot
    steps: int
    """The step count the winner was chosen at: the largest any pilot reached."""
    comparisons: dict[int, list[Comparison]]
    """Step count -> every other pilot scored there, best first."""
    cheaper: Pilot | None
    """The cheapest rival within noise of the winner whose full run is expected to cost less, if any."""

    @property
    def rivals(self) -> list[Comparison]:
        """The comparisons at the largest step count where the winner had a rival."""
        for steps in sorted(self.comparisons, reverse=True):
            if self.comparisons[steps]:
                return self.comparisons[steps]
        return []

    @property
    def rivals_at(self) -> int:
        return next((s for s in sorted(self.comparisons, reverse=True) if self.comparisons[s]), self.steps)


def expected_cost(search: Search, pilot: Pilot) -> float | None:
    """The budget-clock seconds a full run of this pilot's candidate is expected to cost (its median
    cost per step over all its runs, times the final run's steps)."""
    per_step = search.ledger.step_cost(pilot.candidate)
    return None if per_step is None else per_step * search.final_steps()


def choose(search: Search, found: list[Pilot]) -> Verdict | None:
    """The best pilot at the largest step count any pilot reached, compared with the others at every
    step count it reached; a rival is within noise when the difference is under twice its standard error."""
    scored = [p for p in found if any(math.isfinite(v) for v in p.values.values())]
    if not scored:
        return None
    top = max(s for p in scored for s, v in p.values.items() if math.isfinite(v))
    sign = 1 if higher_is_better(search.metric) else -1
    winner = sorted((p for p in scored if math.isfinite(p.values.get(top, math.nan))),
                    key=lambda p: (-sign * p.values[top], p.number))[0]
    n = min(search.config.pilot_valid, search.valid_examples)
    comparisons: dict[int, list[Comparison]] = {}
    for steps, mine in sorted(winner.values.items()):
        others = sorted((p for p in scored if p is not winner and math.isfinite(p.values.get(steps, math.nan))),
                        key=lambda p: (-sign * p.values[steps], p.number))
        comparisons[steps] = [(p, p.values[steps] - mine,
                               2 * math.hypot(sampling_se(mine, n), sampling_se(p.values[steps], n)), False)
                              for p in others]
        comparisons[steps] = [(p, d, t, abs(d) < t) for p, d, t, _ in comparisons[steps]]
    verdict = Verdict(winner, top, comparisons, None)
    mine = expected_cost(search, winner)
    cheaper = [p for p, _, _, within in verdict.rivals
               if within and mine is not None and (expected_cost(search, p) or math.inf) < 0.9 * mine]
    return dataclasses.replace(verdict, cheaper=min(cheaper, key=lambda p: expected_cost(search, p)) if cheaper else None)


def _check_plan(config: RecommendConfig, out: Path) -> None:
    path, plan = out / "plan.json", config.plan()
    if path.exists():
        if read_json(path) != plan:
            raise LoralabError(f"{path}: this folder holds a recommend search with other settings (data, candidates "
                               "or search); rerun it with the same options (only --budget may change), or use "
                               "another --out")
    else:
        write_json(path, plan)


def _lock_worker(out: Path, worker: str):
    """Hold `worker-<name>.lock` for this process's life: two processes running as one worker would
    train the same pilots into the same folders."""
    import fcntl

    handle = open(out / f"worker-{worker}.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise LoralabError(f"{out}: another process is running this search as worker {worker!r}; give this one "
                           "another --worker name, or wait for it to end") from None
    return handle


def open_search(config: RecommendConfig, out: str | Path, *, log: Callable[[str], None] = print,
                progress: bool = False) -> Search:
    """Check the data and models, then open (or resume) the search in `out`; bad input writes nothing."""
    from loralab.models import offline_environment

    start = (time.perf_counter(), time.process_time())  # counting parameters is part of the search's cost
    out, base = Path(out), config.base
    offline_environment(base.offline)
    task = get_task(infer_task(base.train, base.task))
    train = task.read(base.train, base.task, limit=base.train_limit if base.train_sample_seed is None else None)
    valid = task.read(base.valid, base.task, limit=base.valid_limit)
    task.check_labels(valid, task.label_space(train, source=base.train), source=base.valid)
    counts = {c.name: parameter_counts(c, base) for c in config.candidates}  # also: every model loads
    out.mkdir(parents=True, exist_ok=True)
    _check_plan(config, out)
    lock = _lock_worker(out, config.worker)
    metric = task.metrics[0]
    study = _open_study(config, out, "maximize" if higher_is_better(metric) else "minimize")
    return Search(config, out, study, Ledger(out / f"ledger-{config.worker}.jsonl", config.clock, start), metric,
                  min(len(train), base.train_limit or len(train)), len(valid), counts, log=log, progress=progress,
                  lock=lock)


def recommend(config: RecommendConfig, out: str | Path, *, log: Callable[[str], None] = print,
              progress: bool = False, final: bool = True) -> dict[str, Any]:
    """Search, train the winner on all the data, and write `recommendation.json`; returns its content."""
    search = open_search(config, out, log=log, progress=progress)
    try:
        return _search_and_train(search, final)
    finally:
        search.close()


def _search_and_train(search: Search, final: bool) -> dict[str, Any]:
    from loralab.recommend.report import write_recommendation

    config, log = search.config, search.log
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
    log(f"search stopped: {search.stopped}")
    found = pilots(search)
    verdict = choose(search, found)
    final_record = None
    if final and verdict is not None and config.worker == "main":
        winner = next(c for c in config.candidates if c.name == verdict.winner.candidate)
        log(f"winner: trial {verdict.winner.number} {winner.name} ({_settings_text(verdict.winner.settings)}); "
            f"training it on all {search.train_examples} examples")
        final_record = _timed(search, winner.config(config.base, verdict.winner.settings),
                              final_folder(search.out, verdict.winner), "final", winner.name)
    search.ledger.settle()
    return write_recommendation(search, found, verdict, final_record)
