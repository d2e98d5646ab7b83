"""`compare`: every method's bracket rung by rung, then each method's best setting with seeds, then the report.

The runs go through the sweep machinery (`sweeps.sweep`): each stage (the first pilot of each method,
then each rung of every method's bracket, then the final runs) is an experiment of ordinary run folders
swept into the comparison's folder, so a finished run is read back rather than run again, a run killed
half-way is redone (or resumed from its checkpoint), and `executor` (`sweeps.on_ray.ray_executor`)
spreads a stage's runs over a Ray cluster as it does a sweep's. The folder is held with a sweep's lock
for the whole comparison.

    plan.json                                  what the comparison is; a rerun must match it (the budget may change)
    ledger.jsonl                               what each run cost (`budget.py`)
    brackets.json                              each method's bracket, when shaped by its share (`bracket.fill`),
                                               fixed once its first pilot has measured its step; a rerun keeps it
    stopped.json                               why a method's bracket stopped before its last rung (the budget)
    pilots/<method>/<nn>_<settings>/steps-<n>/ a pilot run (steps-<n>-seed-<s>: the last rung's other seeds)
    finals/<method>/<settings>/seed-<s>/       the method's best setting on all the data (a last-rung pilot's weights,
                                               scored on all of it, where that pilot trained the same run)
    compare.json, report.md, report.html       what it found (`report.py` reads compare.json and records only); in
                                               one process, rewritten after each method ("So far, ...")
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

from loralab.comparison.bracket import FILLED_LEAST, MOST, Bracket, fill, ladder
from loralab.comparison.budget import Budget
from loralab.comparison.config import CompareConfig
from loralab.comparison.state import Comparison
from loralab.comparison.report import COMPARE, write_report
from loralab.comparison.summary import summarize
from loralab.errors import LoralabError
from loralab.recommendation.ledger import Ledger
from loralab.reports.rows import higher_is_better
from loralab.runs.artifacts import RECORD, read_json, write_json
from loralab.runs.config import RunConfig
from loralab.sweeps.experiment import Experiment, PlannedRun
from loralab.sweeps.sweep import Executor, folder_lock, sweep

PLAN, LEDGER, SHAPES, STOPPED = "plan.json", "ledger.jsonl", "brackets.json", "stopped.json"
FILL = 0.9
"""The part of what a method's share leaves after its final runs that a filled bracket plans to spend: the
rest absorbs settings that step slower than the first pilot measured (all-linear LoRA, a larger r)."""


def _final_steps(config: RunConfig, examples: int) -> int:
    t = config.training
    steps = math.ceil(math.ceil(math.ceil(examples / t.batch_size) / t.grad_accum) * t.epochs)
    return max(1, min(steps, t.max_steps) if t.max_steps else steps)


def open_comparison(config: CompareConfig, out: Path, *, log: Callable[[str], None] = print, progress: bool = False,
                    executor: Executor | None = None) -> Comparison:
    """Check the data, then open (or resume) the comparison in `out`; bad input writes nothing."""
    from loralab.tasks import get_task, infer_task

    start = (time.perf_counter(), time.process_time())
    base = config.base
    for key in ("train", "valid"):
        if not Path(getattr(base, key)).exists():
            raise LoralabError(f"--{key} {getattr(base, key)}: file not found")
    task = get_task(infer_task(base.train, base.task))
    train = task.read(base.train, base.task, limit=base.train_limit if base.train_sample_seed is None else None)
    valid = task.read(base.valid, base.task, limit=base.valid_limit)
    task.check_labels(valid, task.label_space(train, source=base.train), source=base.valid)
    for method in config.methods:  # every method's settings are valid run settings, before anything is written
        for settings in method.settings(MOST if config.fills else config.size, config.per_choice):
            base.replace({**method.fixed, **settings})
    metric = config.metric or task.metrics[0]
    if metric not in task.metrics:
        raise LoralabError(f"invalid --metric {metric!r}: the {task.name} task reports {', '.join(task.metrics)}")
    train_examples = min(len(train), base.train_limit or len(train))
    ledger = Ledger(out / LEDGER, config.clock, start)
    budget = Budget(config.budget_seconds, tuple(m.name for m in config.methods), ledger,
                    _final_steps(base, train_examples), config.seeds,
                    len(valid) / min(config.pilot_valid, len(valid)))
    # A filled bracket starts as its first rung alone (its first pilot measures the step), and is shaped then.
    brackets = {m.name: Bracket.of(m, config.size, config.min_steps, config.eta, 1 if config.fills else config.rung_count,
                                   higher_is_better(metric), budget.final_steps, config.keep_ties, config.per_choice,
                                   config.pilot_seeds, config.hedge)
                for m in config.methods}
    return Comparison(config, out, budget, metric, train_examples, len(valid), brackets, log=log, progress=progress,
                      executor=executor)


def shape_brackets(cmp: Comparison) -> None:
    """Shape each method's bracket to fill its share (`bracket.fill`), once its first pilot has measured what a
    step costs; the shape is kept in brackets.json, so a resumed comparison plans the runs it planned before.
    A method whose step is still unknown (its first pilot failed) keeps its first rung alone."""
    if not cmp.config.fills:
        return
    path = cmp.out / SHAPES
    shapes = read_json(path) if path.exists() else {}
    budget, config = cmp.budget, cmp.config
    new = [name for name in cmp.brackets if name not in shapes and budget.step_cost(name) is not None]
    for name in new:
        steps = ladder(config.min_steps, config.eta, budget.final_steps)

        def room(rungs: int, seeds: int, name: str = name, steps: tuple[int, ...] = steps) -> float:
            trained = _finals_trained(config, steps[:rungs], seeds, budget.final_steps)
            return FILL * (budget.share(name) - budget.final_reserve(name, trained))

        size, rungs, seeds = fill(room, tuple(budget.pilot_cost(name, s) for s in steps), config.eta,
                                  last_seeds=config.pilot_seeds)
        available, trained = room(rungs, seeds), _finals_trained(config, steps[:rungs], seeds, budget.final_steps)
        shapes[name] = {"settings": size, "rung_steps": list(steps[:rungs]), "planned_seconds": round(available, 1),
                        **({"last_rung_seeds": seeds} if config.pilot_seeds > 1 else {}),
                        **({"finals_trained_by_pilots": trained} if trained else {})}
        cmp.log(f"{name}: bracket of {size} settings over rungs of {', '.join(map(str, steps[:rungs]))} steps"
                + (f", the last with {seeds} seeds" if seeds > 1 else "")
                + (f" (training {trained} of its final runs)" if trained else "") + f", to fill {available:.0f} s of its share")
    if new:
        write_json(path, shapes)
    for name, shape in shapes.items():
        bracket = cmp.brackets[name]
        settings = bracket.method.settings(int(shape["settings"]), cmp.config.per_choice)
        cmp.brackets[name] = dataclasses.replace(bracket, settings=tuple(settings),
                                                 steps=tuple(int(s) for s in shape["rung_steps"]), least=FILLED_LEAST,
                                                 last_seeds=int(shape.get("last_rung_seeds", bracket.last_seeds)),
                                                 caps=tuple(sorted((int(k), int(v))
                                                                   for k, v in shape.get("caps", {}).items())))


def _finals_trained(config: CompareConfig, steps: tuple[int, ...], seeds: int, final_steps: int) -> int:
    """How many of a method's final runs the last rung of `steps` trains, each pilot with `seeds` seeds (one in
    a bracket of one rung): as many as its seeds where it is the final run's length (`runs.rescore`), else none."""
    if not steps or steps[-1] != final_steps:
        return 0
    return min(config.seeds, seeds if len(steps) > 1 else 1)


Planned = tuple[str, RunConfig, str, str]
"""(folder, configuration, kind: pilot or final, method)."""


def _run_stage(cmp: Comparison, name: str, planned: list[Planned], trained: dict[str, str] | None = None) -> None:
    """Sweep `planned` into the comparison's folder, each run's cost into the ledger. `trained`: final run's
    folder -> the pilot's that trained it step for step, whose weights are scored instead (`runs.rescore`)."""
    if not planned:
        return
    kinds = {folder: (kind, method) for folder, _, kind, method in planned}
    ledger = cmp.budget.ledger
    trained = trained or {}

    def timed_run(config: RunConfig, folder: Path, **kwargs: Any) -> dict:
        from loralab.runs import run
        from loralab.runs.rescore import rescore

        wall, cpu = time.perf_counter(), time.process_time()
        key = folder.relative_to(cmp.out).as_posix()
        source = trained.get(key)
        if source is not None:  # trained already: scored, and charged its scoring only (no steps)
            record = rescore(cmp.out / source, config, folder, progress=kwargs.get("progress", False),
                             log=kwargs.get("log", print))
        else:
            record = run(config, folder, **kwargs)
        kind, method = kinds[key]
        ledger.add(ledger.key(folder), kind, wall=time.perf_counter() - wall, cpu=time.process_time() - cpu,
                   train_wall=0.0 if source else float(record.get("train_seconds", 0.0)),
                   steps=0 if source else int(record.get("steps", 0)), candidate=method)
        return record

    experiment = Experiment(f"compare: {name}", str(cmp.out),
                            tuple(PlannedRun(folder, config, (method,)) for folder, config, _, method in planned))
    sweep(experiment, cmp.out, run_fn=timed_run, progress=cmp.progress, log=cmp.log, page=False,
          executor=cmp.executor, lock=False)
    for folder, _, kind, method in planned:  # read back, run on Ray, or killed between its record and its ledger line
        _account(cmp, folder, kind, method)
    ledger.settle()


def _account(cmp: Comparison, folder: str, kind: str, method: str) -> None:
    """Put a finished run that has no ledger line (its process was killed between writing its record and
    its line, or it ran on Ray) into the ledger at its training time, so what it cost is counted."""
    ledger = cmp.budget.ledger
    key = ledger.key(cmp.out / folder)
    if key not in ledger.entries and (cmp.out / folder / RECORD).exists():
        record = read_json(cmp.out / folder / RECORD)
        train = float(record.get("train_seconds", 0.0))
        ledger.add(key, kind, wall=train, cpu=train, train_wall=train, steps=int(record.get("steps", 0)),
                   candidate=method)


def _rung(cmp: Comparison, rung: int, first_only: bool = False, names: set[str] | None = None) -> list[Planned]:
    """The pilots of every method's (of `names`') `rung` that its share affords (the first pilot of a method
    always)."""
    planned: list[Planned] = []
    for name, bracket in cmp.brackets.items():
        if names is not None and name not in names:
            continue
        records = cmp.records(name)
        entrants = bracket.entrants(rung, *records.ranking)
        if entrants is None or name in cmp.stopped:
            continue
        steps, ran = bracket.steps[rung], records.ran
        runs = [(i, seed) for i in entrants for seed in cmp.pilot_seeds(bracket, steps)]
        todo = [(i, seed) for i, seed in runs if not ran(i, steps, seed)]
        for i, seed in runs:
            if (i, seed) not in todo:  # finished before a kill: counted even when its ledger line was never written
                _account(cmp, bracket.folder(i, steps, seed), "pilot", name)
        if cmp.budget.finals_started(name):
            continue  # a method's search closes when its final runs start: a rerun reads them back
        if (rung > 0 and not first_only and bracket.least > 1 and rung not in dict(bracket.caps)
                and len(todo) == len(runs)):
            capped = _trim(cmp, name, bracket, rung, len(entrants))
            if capped is not None:
                bracket, entrants = capped, capped.entrants(rung, *records.ranking) or []
                runs = [(i, seed) for i in entrants for seed in cmp.pilot_seeds(bracket, steps)]
                todo = list(runs)
        known = cmp.budget.step_cost(name) is not None
        if first_only:
            if not known and todo and todo[0] == (entrants[0], None):
                planned.append(_pilot(cmp, bracket, entrants[0], steps))
            continue
        chosen, cost = [], 0.0
        last = rung == len(bracket.steps) - 1  # its pilots train final runs where it is their length
        trained = _finals_trained(cmp.config, bracket.steps, bracket.last_seeds, cmp.budget.final_steps) if last else 0
        for i, seed in todo:
            more = cmp.budget.pilot_cost(name, steps)
            if not cmp.budget.affords(name, cost + more, trained):
                left, reserve = cmp.budget.left(name) - cost, cmp.budget.final_reserve(name, trained)
                cmp.stopped[name] = (f"budget: a {steps}-step pilot (about {more:.0f} s) and the final runs (about "
                                     f"{reserve:.0f} s) did not fit in the {left:.0f} s left of its share"
                                     if left > 0 else f"budget: its share ({cmp.budget.share(name):.0f} s) is spent"
                                     + (f"; its final runs (about {reserve:.0f} s) run anyway" if reserve else ""))
                cmp.log(f"{name}: bracket stopped at rung {rung + 1}; {cmp.stopped[name]}")
                write_json(cmp.out / STOPPED, cmp.stopped)
                break
            chosen.append((i, seed))
            cost += more
        if rung > 0 and len(chosen) < len(todo):
            continue  # a later rung runs whole or not at all: its survivors are compared at equal steps
        planned += [_pilot(cmp, bracket, i, steps, seed) for i, seed in chosen]
    return planned


def _trim(cmp: Comparison, name: str, bracket: Bracket, rung: int, entrants: int) -> Bracket | None:
    """The bracket with `rung` trimmed (`Bracket.trim`) where its planned entrants and the rungs after them no
    longer fit the method's share as its pilots have measured a step; the trim is kept in brackets.json before
    any pilot of the rung runs, so a resumed comparison plans the same runs. None: nothing trimmed."""
    trained = _finals_trained(cmp.config, bracket.steps, bracket.last_seeds, cmp.budget.final_steps)
    most = bracket.trim(rung, entrants, lambda steps: cmp.budget.pilot_cost(name, steps),
                        lambda cost: cmp.budget.affords(name, cost, trained))
    if most is None:
        return None
    path = cmp.out / SHAPES
    shapes = read_json(path)
    shapes[name]["caps"] = {**shapes[name].get("caps", {}), str(rung): most}
    write_json(path, shapes)
    capped = dataclasses.replace(bracket, caps=tuple(sorted({**dict(bracket.caps), rung: most}.items())))
    cmp.brackets[name] = capped
    cmp.log(f"{name}: rung {rung + 1} ({bracket.steps[rung]} steps) takes {most} of its {entrants} settings, so that its "
            f"last rung ({bracket.steps[-1]} steps) still fits its share: its pilots cost more than its first pilot "
            "measured")
    return capped


def _pilot(cmp: Comparison, bracket: Bracket, index: int, steps: int, seed: int | None = None) -> Planned:
    return (bracket.folder(index, steps, seed), cmp.pilot_config(bracket.method, bracket.settings[index], steps, seed),
            "pilot", bracket.method.name)


def run_brackets(cmp: Comparison) -> None:
    """Every method's bracket, then its final runs. Runs in this process go one method at a time, each method's
    bracket and final runs whole before the next starts (a comparison stopped part-way has whole rows, and
    the last-rung pilots a method's final runs are scored from are minutes old); with an executor (Ray) all
    methods' pilots of a rung are one stage, which it spreads. Each method's share is its own, so the order
    changes no method's runs."""
    groups = [{name} for name in cmp.brackets] if cmp.executor is None else [set(cmp.brackets)]
    for k, names in enumerate(groups[:-1]):  # compare.json and the report so far, after each method but the last
        _run_methods(cmp, names)
        pending = tuple(n for group in groups[k + 1:] for n in cmp.brackets if n in group)
        write_json(cmp.out / COMPARE, summarize(cmp, best_settings(cmp), pending))
        write_report(cmp.out)
    _run_methods(cmp, groups[-1])


def _run_methods(cmp: Comparison, names: set[str]) -> None:
    """`names`' brackets rung by rung, their pilots of a rung in one stage; a method whose bracket is over trains
    its final runs after that stage."""
    which = "the first pilot of " + (next(iter(names)) if len(names) == 1 else "each method")
    _run_stage(cmp, which, _rung(cmp, 0, first_only=True, names=names))
    shape_brackets(cmp)
    longest = max(len(cmp.brackets[name].steps) for name in names)
    for rung in range(longest):
        steps = sorted({cmp.brackets[n].steps[rung] for n in names if rung < len(cmp.brackets[n].steps)})
        of = f" of {next(iter(names))}" if len(names) == 1 else ""
        _run_stage(cmp, f"rung {rung + 1}{of} ({', '.join(map(str, steps))} steps)", _rung(cmp, rung, names=names))
        over = {name for name in names  # a rerun after a kill amid them finishes them here, not after every method
                if cmp.budget.finals_done(name) < cmp.config.seeds and _over(cmp, name, cmp.brackets[name], rung)}
        if over:
            run_finals(cmp, best_settings(cmp), only=over)


def _over(cmp: Comparison, name: str, bracket: Bracket, rung: int) -> bool:
    """Whether `name`'s bracket runs no rung after `rung`."""
    return (rung >= len(bracket.steps) - 1 or name in cmp.stopped
            or bracket.entrants(rung + 1, *cmp.records(name).ranking) is None)


def best_settings(cmp: Comparison) -> dict[str, Any]:
    """Method -> its bracket's verdict (None when no pilot of it scored)."""
    verdicts = {}
    for name, bracket in cmp.brackets.items():
        score, loss = cmp.scored(name)
        verdicts[name] = bracket.best(score, cmp.metric, cmp.pilot_examples, loss)
    return verdicts


def run_finals(cmp: Comparison, verdicts: dict[str, Any], only: set[str] | None = None) -> None:
    """Each method's best setting with every seed; a final run that a last-rung pilot trained step for step
    (`Comparison.trained_final`) is that pilot's weights scored on the whole validation set, not trained again."""
    planned: list[Planned] = []
    trained: dict[str, str] = {}
    for method in cmp.config.methods:
        verdict = verdicts[method.name]
        if verdict is None or (only is not None and method.name not in only):
            continue
        for seed in cmp.seeds():
            folder = cmp.final_folder(method, verdict.winner.settings, seed)
            planned.append((folder, cmp.final_config(method, verdict.winner.settings, seed), "final", method.name))
            if (pilot := cmp.trained_final(method, verdict.winner.settings, seed)) is not None:
                trained[folder] = pilot
    names = "each method's" if only is None else ", ".join(sorted(only)) + "'s"
    _run_stage(cmp, f"final runs ({cmp.config.seeds} seeds of {names} best)", planned, trained)


def _planned_rules(config: CompareConfig, out: Path) -> CompareConfig:
    """A folder resumes by the rules it was planned with, so its rungs hold the pilots they were planned with:
    one planned before ties were kept (its plan.json has no "keep_ties") without that rule, one planned before
    validation losses broke ties (no "tie_break") without that rule, one planned before each combination of a
    method's choices spanned its rates (no "rates") in the old order, one planned before the last rung's pilots
    trained with several seeds (no "last_rung_seeds") with one, one planned before a rung kept a lower rate
    (no "survivors") without that rule, and one planned
    before brackets filled their shares (a size and rungs in its plan), asked again without --bracket-size
    and --rungs, with the size and rungs it was planned with. Anything else in the plan must still match."""
    path = out / PLAN
    if not path.is_file():
        return config
    try:
        planned = read_json(path)
    except LoralabError:
        return config  # the check under the lock says what is wrong with it
    if not isinstance(planned, dict):
        return config
    if config.keep_ties and "keep_ties" not in planned:
        config = dataclasses.replace(config, keep_ties=False)
    if config.tie_break and "tie_break" not in planned:
        config = dataclasses.replace(config, tie_break=False)
    if config.per_choice and "rates" not in planned:
        config = dataclasses.replace(config, per_choice=False)
    if config.pilot_seeds != 1 and "last_rung_seeds" not in planned:
        config = dataclasses.replace(config, pilot_seeds=1)
    if config.hedge and "survivors" not in planned:
        config = dataclasses.replace(config, hedge=False)
    size, rungs = planned.get("bracket_size"), planned.get("rungs")
    if config.fills and isinstance(size, int) and isinstance(rungs, int):
        config = dataclasses.replace(config, bracket_size=size, rungs=rungs)
    return config


def compare(config: CompareConfig, out: str | Path, *, log: Callable[[str], None] = print, progress: bool = False,
            executor: Executor | None = None) -> dict[str, Any]:
    """Search each method in its own bracket, train its best setting with seeds, write compare.json and the
    report; returns what compare.json holds. A second process on the folder is refused, as a second sweep is."""
    out = Path(out)
    config = _planned_rules(config, out)
    cmp = open_comparison(config, out, log=log, progress=progress, executor=executor)
    with folder_lock(out):
        path = out / PLAN
        if path.exists() and read_json(path) != config.plan():
            raise LoralabError(f"{path}: this folder holds a comparison with other settings (data, methods, brackets "
                               "or seeds); rerun it with the same options (only --budget may change), or use another "
                               "--out")
        write_json(path, config.plan())
        cmp.budget.ledger = Ledger(out / LEDGER, config.clock, cmp.budget.ledger.start)  # read under the lock
        if (out / STOPPED).is_file():
            cmp.stopped.update(read_json(out / STOPPED))
        run_brackets(cmp)
        verdicts = best_settings(cmp)
        run_finals(cmp, verdicts)
        result = summarize(cmp, verdicts)
        write_json(out / COMPARE, result)
        write_report(out)
        return result
