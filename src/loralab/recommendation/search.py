"""The recommend search: candidates that fit, then pilots by successive halving within a time budget.

1. Candidates (model x method) are screened for memory (`memory.py`): an estimate from parameter
   counts, then a three-step probe run, which also measures each candidate's step time.
2. Each candidate is a family of its own: successive halving (`halving.py`) runs within it, so a
   method that learns slowly per step competes only with its own settings, never with a faster one.
   The budget, less a reserve for the final run (the costliest candidate's run on all the data), is
   split equally among the candidates; each takes a turn with a bracket sized to fit its share (the
   most settings whose pilots fit, rung by rung), drawn by Optuna's TPE sampler, trained for r0
   optimizer steps on the first r0 * batch training examples and scored on the first `pilot_valid`
   validation examples; the best 1/eta go on to eta times the steps, and so on. When every candidate
   has had its turn, what is left is split again among those whose space is not exhausted, until no
   pilot fits.
3. A pilot starts only while the seconds spent so far, its estimated cost and the final run of the
   leader (or of its own candidate, should it lead) fit in the budget, so the final run always fits
   and the budget left at the end is at most about one pilot. The winner (`verdict.py`) is trained
   on all the training data (`train_final`), never for fewer steps than its pilot, and scored on all
   the validation data; `driver.py` runs these steps in turn.

Every probe, pilot and final run is an ordinary run folder (`folder.py`). The Optuna study lives in
a journal file in the output folder, and the seconds spent in a ledger beside it (`ledger.py`), so
rerunning the same command resumes: finished pilots are read back, not redone, and a bracket cut
short goes on where it stopped. Several workers can share one study (`worker`); see
`loralab recommend --help`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from loralab.metrics import validation_loss
from loralab.models import offline_environment
from loralab.recommendation.config import RecommendConfig
from loralab.recommendation.folder import (JOURNAL, check_plan, final_folder, ledger_path, lock_worker, pilot_folder,
                                           probe_folder)
from loralab.recommendation.halving import BRACKET, LOSS, BracketPruner, bracket_shape
from loralab.recommendation.ledger import Clock, Ledger, real_clock
from loralab.recommendation.memory import (Fit, batch_tokens, estimate_mb, fits, parameter_counts, predicted_peak,
                                          resident_mb)
from loralab.recommendation.space import Candidate, describe
from loralab.recommendation.verdict import Pilot
from loralab.recommendation.standing import (Runner, Search, leader, pilot_config, pilot_value, pilots,  # noqa: F401
                                             timed)
from loralab.reports.rows import higher_is_better
from loralab.runs.artifacts import RECORD
from loralab.tasks import get_task, infer_task

__all__ = ["Runner", "Search", "STUDY", "leader", "open_search", "pilot_config", "pilots", "run_brackets", "screen",
           "train_final"]
STUDY = "recommend"
PROBE_STEPS = 3  # the first step warms up (allocations, thread pools); the median of three is a steady one
def screen(search: Search) -> None:
    """Memory verdicts for every candidate: parameter counts, then a three-step probe for those left."""
    config, limit = search.config, search.config.memory_mb
    for candidate in config.candidates:
        trainable, total = search.counts[candidate.name]
        estimate = estimate_mb(trainable, total)
        fit = Fit(candidate.name, trainable, total, round(estimate, 1))
        if not fits(estimate, limit):
            fit = dataclasses.replace(fit, excluded=f"parameters alone need {estimate:,.0f} MB > {limit:,.0f} MB")
        else:
            low, high = candidate.lr_range
            per_step = config.base.training.batch_size * config.base.training.grad_accum
            examples = min(search.train_examples, PROBE_STEPS * per_step)
            probe = dataclasses.replace(candidate.config(config.base, {"lr": math.sqrt(low * high)}), valid=None,
                                        train_limit=examples,
                                        training=dataclasses.replace(config.base.training, lr=math.sqrt(low * high),
                                                                     max_steps=PROBE_STEPS,
                                                                     epochs=max(1.0, PROBE_STEPS * per_step / examples)))
            before = resident_mb() if limit is not None else None  # the weights the probe loads come on top
            record = timed(search, probe, probe_folder(search.out, config.worker, candidate.name), "probe",
                            candidate.name)
            peak = float(record["peak_memory_mb"])
            fit = dataclasses.replace(fit, probe_mb=round(peak, 1))
            if not fits(peak, limit):
                fit = dataclasses.replace(fit, excluded=f"a three-step probe peaked at {peak:,.0f} MB > {limit:,.0f} MB")
            elif before is not None and record.get("device") == "cpu":  # memory.py: the run's largest batch
                tokens = batch_tokens(dataclasses.replace(probe, train_limit=config.base.train_limit))
                curve = "qlora" if config.base.quantize.enabled and candidate.lora_like else candidate.strategy.value
                predicted = predicted_peak(peak, before + 4 * total / 2**20, tokens, curve)
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


def _brackets_of(search: Search, candidate: Candidate) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """This worker's brackets of one candidate, by name."""
    out: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in search.study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if attrs.get("worker") == search.config.worker and attrs.get("candidate") == candidate.name and BRACKET in attrs:
            out.setdefault(attrs[BRACKET], []).append(trial)
    return out


def _is_open(trials: list[optuna.trial.FrozenTrial]) -> bool:
    return any(t.state == optuna.trial.TrialState.RUNNING for t in trials)


def _key(settings: dict[str, Any]) -> str:
    return repr(sorted(settings.items()))


def _drawn(search: Search, candidate: Candidate) -> set[str]:
    """The settings of `candidate` drawn so far, by any bracket."""
    return {_key(t.user_attrs["settings"]) for t in search.study.get_trials(deepcopy=False)
            if t.user_attrs.get("candidate") == candidate.name and "settings" in t.user_attrs}


def _exhausted(search: Search, candidate: Candidate) -> bool:
    """Every setting its space holds has been drawn (only a space without a learning-rate range ends)."""
    size = candidate.space_size()
    return size is not None and len(_drawn(search, candidate)) >= size


def _draw(search: Search, candidate: Candidate) -> tuple[optuna.trial.Trial, dict[str, Any]]:
    """A new trial and its settings. In a finite space a setting is drawn once: the sampler may propose one
    already drawn (on science-exam TPE drew one LoRA setting five times, each pilot scoring the same), and
    then that trial is dropped (failed, outside every bracket) and one of the settings not yet drawn, picked
    by the trial's number, is asked for instead."""
    trial = search.study.ask()
    settings = candidate.suggest(trial)
    if candidate.space_size() is None:
        return trial, settings
    drawn = _drawn(search, candidate)
    undrawn = [s for s in candidate.grid() if _key(s) not in drawn]
    if _key(settings) not in drawn or not undrawn:
        return trial, settings
    search.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    choice = undrawn[trial.number % len(undrawn)]
    search.study.enqueue_trial(candidate.params(choice))
    trial = search.study.ask()
    return trial, candidate.suggest(trial)


def _reserve(search: Search, candidate: Candidate, steps: int = 0) -> float:
    """The final run to keep room for while `candidate` runs a pilot of `steps`: the leader's or its
    own, whichever costs more (after the pilot, one of them leads)."""
    ahead = leader(search)
    return max(search.final_cost(candidate.name, steps), search.final_cost(ahead, steps) if ahead else 0.0)


def _fits(search: Search, candidate: Candidate, steps: int) -> str | None:
    """None when a pilot of `steps` fits: what is spent, it, and the final run of whichever candidate
    can lead after it (the leader now, or this one); else why not."""
    cost, reserve, left = search.pilot_cost(candidate.name, steps), _reserve(search, candidate, steps), search.left()
    if cost + reserve <= left:
        return None
    return (f"a {steps}-step pilot (about {cost:.0f} s) and the final run (about {reserve:.0f} s) no longer fit "
            f"in what is left ({left:.0f} s)")


def _new_bracket(search: Search, candidate: Candidate, share: float) -> tuple[str | None, str | None]:
    """(the name of a new bracket of `candidate` sized to fit `share`, None) or (None, why none)."""
    config = search.config
    costs = tuple(search.pilot_cost(candidate.name, s) for s in search.rungs)
    most = config.bracket_size or config.eta ** (config.rungs - 1)
    size = candidate.space_size()
    if size is not None:
        size -= len(_drawn(search, candidate))  # a setting is drawn once (`_draw`)
    entrants, rungs = bracket_shape(share, costs, config.eta, most if size is None else min(most, size))
    if entrants == 0 and costs[0] <= search.left() - _reserve(search, candidate, search.rungs[0]):
        # A budget too small to share still runs what it can: one first-rung pilot, in turn.
        search.log(f"{candidate.name}: its share ({share:.0f} s) holds no {search.rungs[0]}-step pilot; it takes "
                   f"one (about {costs[0]:.0f} s) from what is left")
        share = search.shares[candidate.name][-1] = round(costs[0], 1)
        entrants, rungs = 1, 1
    if entrants == 0:
        return None, (f"budget: its share ({share:.0f} s) holds no {search.rungs[0]}-step pilot "
                      f"(about {costs[0]:.0f} s)")
    name = f"{config.worker}-{candidate.name}-{len(_brackets_of(search, candidate))}"
    _fill(search, candidate, name, entrants, rungs)
    search.log(f"{candidate.name}: bracket {name} of {entrants} setting(s) over {rungs} rung(s), to fit its "
               f"share of {share:.0f} s")
    return name, None


def _fill(search: Search, candidate: Candidate, bracket: str, entrants: int, rungs: int) -> None:
    """Draw a bracket's settings, up to `entrants` (a search killed while drawing them fills the rest
    on resuming). A trial joins the bracket only with its last attribute, so a half-written trial
    stays outside it."""
    for _ in range(len(_brackets_of(search, candidate).get(bracket, [])), entrants):
        trial, settings = _draw(search, candidate)
        for key, value in (("worker", search.config.worker), ("candidate", candidate.name), ("rungs", rungs),
                           ("entrants", entrants), ("settings", settings), (BRACKET, bracket)):
            trial.set_user_attr(key, value)


def _run_bracket(search: Search, candidate: Candidate, bracket: str) -> tuple[int, str | None]:
    """Run a bracket's rungs; (pilots trained or read back, why it stopped short or None)."""
    running, done = optuna.trial.TrialState.RUNNING, 0
    first = _brackets_of(search, candidate)[bracket][0].user_attrs
    rungs = search.rungs[:int(first.get("rungs", len(search.rungs)))]
    if "entrants" in first:
        _fill(search, candidate, bracket, int(first["entrants"]), len(rungs))
    for rung, steps in enumerate(rungs):
        for frozen in [t for t in _brackets_of(search, candidate)[bracket] if t.state == running]:
            if steps in frozen.intermediate_values:
                continue
            settings = frozen.user_attrs["settings"]
            folder = pilot_folder(search.out, frozen.number, candidate.name, steps)
            why = None if (folder / RECORD).exists() else _fits(search, candidate, steps)
            if why:
                return done, "budget: " + why
            record = timed(search, pilot_config(search, candidate, settings, steps), folder, "pilot", candidate.name)
            done += 1
            value = pilot_value(search, record)
            live = optuna.trial.Trial(search.study, frozen._trial_id)
            loss = validation_loss(record.get("valid") or {}) if record.get("status") == "completed" else None
            if loss is not None:
                live.set_user_attr(f"{LOSS}{steps}", loss)  # breaks a tie of scores (halving.BracketPruner)
            live.report(value, steps)
            search.log(f"[{search.ledger.spent():6.0f} s] trial {frozen.number} {candidate.name} "
                       f"({describe(settings)}) at {steps} steps: {search.metric} {value:.4f}")
        # Judged only once every trial of the bracket has reported this rung (see halving.py).
        for frozen in [t for t in _brackets_of(search, candidate)[bracket] if t.state == running]:
            trial = optuna.trial.Trial(search.study, frozen._trial_id)
            value = frozen.intermediate_values.get(steps, math.nan)
            if rung < len(rungs) - 1:
                if trial.should_prune():
                    search.study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
            elif math.isnan(value):
                search.study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
            else:
                search.study.tell(frozen.number, value)
    return done, None


def _turn(search: Search, candidate: Candidate, share: float) -> tuple[int, str | None]:
    """One candidate's turn: finish its open bracket, or start one sized to `share` seconds; (pilots
    run or read back, why no more)."""
    config, brackets = search.config, _brackets_of(search, candidate)
    open_ = [name for name, trials in brackets.items() if _is_open(trials)]
    if open_:
        return _run_bracket(search, candidate, open_[0])
    if config.brackets is not None and len(brackets) >= config.brackets:
        return 0, f"{config.brackets} bracket(s) done"
    if _exhausted(search, candidate):
        return 0, "its space is exhausted (every setting drawn)"
    search.shares.setdefault(candidate.name, []).append(round(share, 1))
    name, why = _new_bracket(search, candidate, share)
    return (0, why) if name is None else _run_bracket(search, candidate, name)


def run_brackets(search: Search) -> None:
    """Screen the candidates, then give each its turns (a bracket within its share of the budget)
    until no candidate can run another pilot: the budget, the bracket count, exhausted spaces or the
    memory limit stop them."""
    screen(search)
    kept = search.kept
    if not kept:
        search.stopped = "no candidate fits the memory limit"
        search.log(f"search stopped: {search.stopped}")
        return
    reserve = search.final_reserve()
    first = max(0.0, search.left() - reserve) / len(kept)
    search.split = {"budget": search.config.budget_seconds, "spent_before": round(search.ledger.spent(), 1),
                    "final_reserve": round(reserve, 1), "share": round(first, 1),
                    "candidates": [c.name for c in kept]}
    search.log(f"budget split: {search.ledger.spent():.0f} s spent screening, {reserve:.0f} s kept for the final "
               f"run, {first:.0f} s for each of {len(kept)} candidate(s) ({', '.join(c.name for c in kept)})")
    turn = 0
    while True:
        why: dict[str, str] = {}
        ran = 0
        for i, candidate in enumerate(kept):
            share = first
            if turn > 0:  # what is left is split again among the candidates still able to run
                rest = [c for c in kept[i:] if c.name not in why]
                share = max(0.0, search.left() - _reserve(search, candidate)) / max(1, len(rest))
            done, reason = _turn(search, candidate, share)
            ran += done
            if reason:
                why[candidate.name] = reason
        turn += 1
        if not ran and len(why) == len(kept):
            break
    search.stopped = _why_stopped(why)
    if not any(e["kind"] == "pilot" for e in search.ledger.entries.values()):
        needed = (search.ledger.spent() + search.final_reserve(search.rungs[0])
                  + sum(search.pilot_cost(c.name, search.rungs[0]) for c in kept))
        search.stopped += (f"; a budget of about {needed:.0f} s would give each of the {len(kept)} candidate(s) one "
                           f"{search.rungs[0]}-step pilot (or name fewer --strategies)")
    search.ledger.settle()
    search.log(f"search stopped: {search.stopped}")


def _why_stopped(why: dict[str, str]) -> str:
    """One line: why no candidate can run another pilot."""
    reasons = sorted(set(why.values()))
    if len(reasons) == 1:
        return reasons[0] + " (every candidate)"
    budget = all(r.startswith("budget") for r in reasons)
    parts = [f"{name}: {r.removeprefix('budget: ') if budget else r}" for name, r in why.items()]
    return ("budget: " if budget else "") + "; ".join(parts[:3]) + (f"; and {len(parts) - 3} more" if len(parts) > 3
                                                                   else "")


def train_final(search: Search, winner: Pilot) -> dict[str, Any]:
    """Train the winner's settings on all the data, never for fewer steps than its longest pilot (or
    read its finished run back); its run record."""
    candidate = next(c for c in search.config.candidates if c.name == winner.candidate)
    config = candidate.config(search.config.base, winner.settings)
    steps, pilot = search.final_steps(), max(winner.values, default=0)
    if pilot > steps:  # more passes over the data, so the final run is at least as long as the pilot
        per_step = config.training.batch_size * config.training.grad_accum
        epochs = max(config.training.epochs, pilot * per_step / search.train_examples)
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, max_steps=pilot,
                                                                          epochs=epochs))
    search.log(f"winner: trial {winner.number} {candidate.name} ({describe(winner.settings)}); training it on all "
               f"{search.train_examples} examples for {max(steps, pilot)} steps (its longest pilot: {pilot})")
    return timed(search, config, final_folder(search.out, winner.number, candidate.name), "final", candidate.name)


def open_search(config: RecommendConfig, out: str | Path, *, log: Callable[[str], None] = print,
                progress: bool = False, runner: Runner | None = None, now: Clock = real_clock) -> Search:
    """Check the data and models, then open (or resume) the search in `out`; bad input writes nothing.
    `runner` and `now` stand in for training and the clock in tests."""
    start = now()  # counting parameters is part of the search's cost
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
    return Search(config, out, study, Ledger(ledger_path(out, config.worker), config.clock, start, now), metric,
                  min(len(train), base.train_limit or len(train)), len(valid), counts, log=log, progress=progress,
                  lock=lock, runner=runner)
