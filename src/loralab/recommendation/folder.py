"""A search's folder: where each file and run folder lives, the plan it holds, and each worker's lock.

    plan.json                     what the search is (`RecommendConfig.plan`); a rerun must match it
    study.journal                 the Optuna study (unless --storage names another)
    ledger-<worker>.jsonl         what each worker spent (`ledger.py`)
    worker-<worker>.lock          held while a process runs as that worker
    probes/<worker>/<candidate>/  one-step memory probes
    pilots/t<trial>-<candidate>/steps-<n>/
    final/t<trial>-<candidate>/   the winner trained on all the data
    recommendation.json           what the search found (the driver writes it, the report reads it)
    report.md, curves.png         the report
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from loralab.errors import LoralabError
from loralab.runs.artifacts import read_json, write_json

PLAN = "plan.json"
JOURNAL = "study.journal"
RECOMMENDATION = "recommendation.json"
REPORT = "report.md"
CURVES = "curves.png"


def ledger_path(out: Path, worker: str) -> Path:
    return out / f"ledger-{worker}.jsonl"


def probe_folder(out: Path, worker: str, candidate: str) -> Path:
    return out / "probes" / worker / candidate


def pilot_folder(out: Path, trial: int, candidate: str, steps: int) -> Path:
    return out / "pilots" / f"t{trial:03d}-{candidate}" / f"steps-{steps}"


def final_folder(out: Path, trial: int, candidate: str) -> Path:
    """The winner's full run; named for its trial, so a search resumed with more budget that finds
    another winner keeps the earlier one's run beside the new one."""
    return out / "final" / f"t{trial:03d}-{candidate}"


def check_plan(out: Path, plan: dict[str, Any]) -> None:
    """Write the plan into a new folder; refuse a folder holding another search's."""
    path = out / PLAN
    if path.exists():
        if read_json(path) != plan:
            raise LoralabError(f"{path}: this folder holds a recommend search with other settings (data, candidates "
                               "or search); rerun it with the same options (only --budget may change), or use "
                               "another --out")
    else:
        write_json(path, plan)


def lock_worker(out: Path, worker: str) -> IO[str]:
    """Hold `worker-<name>.lock` for this process's life: two processes running as one worker would
    train the same pilots into the same folders."""
    import fcntl  # POSIX only: imported here so that the package still imports where it is missing

    handle = open(out / f"worker-{worker}.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise LoralabError(f"{out}: another process is running this search as worker {worker!r}; give this one "
                           "another --worker name, or wait for it to end") from None
    return handle
