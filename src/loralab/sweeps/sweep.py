"""Sweeping an experiment: every planned run that is not done yet, one after another, resumable.

Which runs are done is decided by `loralab.runs.state`; `shard` splits one sweep folder between
several processes or machines. After each run the sweep rewrites `report.html`, which says how many
planned runs are left. An `executor` runs the runs elsewhere (`loralab.sweeps.on_ray`: a Ray
cluster) and hands back their records as they finish.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from loralab.errors import LoralabError
from loralab.metrics import METRICS, shown
from loralab.reports import write_page
from loralab.runs.artifacts import write_json
from loralab.runs.state import record_state, rerun
from loralab.sweeps.experiment import MANIFEST, Experiment, PlannedRun

LOCK = ".sweep.lock"
# Runs the planned runs (each with why it runs) into the sweep folder; yields each with its record as it ends.
Executor = Callable[[list[tuple[PlannedRun, str]], Path], Iterable[tuple[PlannedRun, dict]]]


@dataclass
class SweepResult:
    """What a sweep did."""

    out_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    seconds: float = 0.0


def sweep(experiment: Experiment, out_dir: str | Path, *, run_fn: Callable[..., dict] | None = None,
          progress: bool = True, log: Callable[[str], None] = print, shard: tuple[int, int] = (1, 1),
          page: bool = True, executor: Executor | None = None, lock: bool = True) -> SweepResult:
    """Run every planned run that is not already done, one after another, into `out_dir/<folder>/`.

    `shard` (k, n) runs only every n-th planned run starting from the k-th, so n processes (or
    machines sharing the folder) split one sweep between them without touching each other's runs.
    `page` rewrites `report.html` after each run, so the sweep's progress can be watched in a browser.
    `executor`: where the runs run (None: in this process, one after another).
    `lock`: hold the folder against a second sweep (without a shard); under torchrun only rank 0 holds it.
    """
    k, n = shard
    if not (isinstance(k, int) and isinstance(n, int) and 1 <= k <= n):
        raise LoralabError(f"invalid shard {k}/{n}: expected K/N with 1 <= K <= N")
    if run_fn is None:
        from loralab.runs import run as run_fn
    out_dir = Path(out_dir)
    # Every folder is checked before anything runs, so a clash is refused at once, not hours in.
    _states(experiment, out_dir)
    for p in experiment.runs:
        for key in ("train", "valid"):
            value = getattr(p.config, key)
            if value and not Path(value).exists():
                raise LoralabError(f"{experiment.source}: run {p.folder}: {key} file {value} not found")
    # Every data file is read once before anything is written, so a bad row stops the sweep at once.
    from loralab.tasks import check_data

    checked: dict = {}
    for p in experiment.runs:
        check_data(p.config, checked)
    with contextlib.ExitStack() as held:
        if n == 1 and lock:  # shards share a folder on purpose; two whole sweeps would run the same runs twice
            held.enter_context(folder_lock(out_dir))
        return _sweep(experiment, out_dir, run_fn, progress, log, shard, page, executor,
                      _states(experiment, out_dir))  # again: a sweep that held the folder may have ended since


def _states(experiment: Experiment, out_dir: Path) -> dict[str, tuple[str, str]]:
    return {p.folder: record_state(out_dir / p.folder, p.config) for p in experiment.runs}


def folder_lock(out_dir: Path):
    """This process's hold on the sweep folder (a lock file held with flock, so the lock of a process
    that died is free again at once); a second sweep on the folder is refused in one line."""
    from filelock import FileLock, Timeout

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return FileLock(out_dir / LOCK, timeout=0).acquire()  # released as the `with` ends
    except Timeout:
        raise LoralabError(f"{out_dir}: another loralab sweep is running in this folder; wait for it to end, "
                           "or share the folder between processes with --shard K/N") from None


def _sweep(experiment: Experiment, out_dir: Path, run_fn: Callable[..., dict], progress: bool,
           log: Callable[[str], None], shard: tuple[int, int], page: bool, executor: Executor | None,
           states: dict[str, tuple[str, str]]) -> SweepResult:
    k, n = shard
    write_json(out_dir / MANIFEST, {
        "experiment": experiment.name,
        "source": experiment.source,
        "description": experiment.description,
        "runs": [{"folder": p.folder, "labels": list(p.labels)} for p in experiment.runs],
    })
    result = SweepResult(out_dir)
    mine = [p for i, p in enumerate(experiment.runs) if i % n == k - 1]
    todo = [p for p in mine if states[p.folder][0] in ("redo", "resume")]
    result.skipped = [p.folder for p in mine if states[p.folder][0] == "done"]
    log(f"{experiment.name}: {len(experiment.runs)} runs" + (f", shard {k}/{n} of {len(mine)}" if n > 1 else "")
        + f", {len(result.skipped)} already done, {len(todo)} to run")
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, dynamic_ncols=True, position=0)
    reasons = [(p, states[p.folder][1]) for p in todo]
    say = bar.write if progress else log

    def in_process() -> Iterator[tuple[PlannedRun, dict]]:
        for planned, why in reasons:
            say(f"[{len(result.ran) + 1}/{len(todo)}] {planned.folder}" + ("" if why == "not run yet" else f" ({why})"))
            yield planned, rerun(run_fn, planned.config, out_dir / planned.folder, progress=progress,
                                 log=say, resume=states[planned.folder][0] == "resume")

    for planned, record in (in_process() if executor is None else executor(reasons, out_dir)):
        result.ran.append(planned.folder)
        if record.get("status") == "diverged":
            result.diverged.append(planned.folder)
            say(f"  diverged at step {record.get('diverged_at_step')}; going on")
        elif "valid" in record:
            scores = "  ".join(f"{METRICS[k].label} {shown(v)}" for k, v in record["valid"].items() if k in METRICS)
            say(f"  {scores}  ({record['train_seconds']:.0f} s)")
        if page:
            _rewrite_page(out_dir, say)
        bar.update(1)
    bar.close()
    result.seconds = time.perf_counter() - start
    log(f"{experiment.name}: ran {len(result.ran)} ({len(result.diverged)} diverged), kept {len(result.skipped)}, "
        f"{_duration(result.seconds)}")
    return result


def _rewrite_page(out_dir: Path, log: Callable[[str], None]) -> None:
    """report.html as the records stand; a page that cannot be written never stops the sweep."""
    try:
        write_page(out_dir, running=True)
    except Exception as e:  # a report's fault must not end hours of training; the final report will say it again
        log(f"  report.html not rewritten: {type(e).__name__}: {e}")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
