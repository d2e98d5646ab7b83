"""Resume: whether a planned run's folder already holds that run, finished, and redoing one cleanly.

A record that is complete and matches its planned configuration is kept; one that is unfinished
(status "running": the process died mid-run, even by `kill -9`), unreadable, incomplete, or whose
data files changed since (by content, `run.json`'s `data`) is redone; one that holds a *different*
configuration is refused, since reusing it would silently mix two experiments. Sweeps and the
intrinsic-dimension measurement both ask here.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any, Callable

from loralab.errors import LoralabError
from loralab.heap import release_heap
from loralab.runs.artifacts import RECORD, WEIGHTS, file_sha256
from loralab.runs.record import FutureRecord, read_record
from loralab.settings import RunConfig, identity


_comparable = identity  # a configuration as compared for reuse: `loralab.settings.run.identity`


@functools.lru_cache(maxsize=64)
def _content(path: str, mtime_ns: int = 0) -> str:
    """A file's sha256, cached per path and modification time (an edit in place is seen)."""
    return file_sha256(path)


def _hash(path: str | Path) -> str:
    path = Path(path).resolve()
    return _content(str(path), path.stat().st_mtime_ns)


def _same_file(recorded: str | None, planned: str | None) -> bool:
    """Data files match by path, else by content; a recorded file that is gone (a clone at another
    absolute path, another machine) can only match by name."""
    if recorded == planned:
        return True
    if not recorded or not planned:
        return False
    if Path(recorded).is_file() and Path(planned).is_file():
        return _hash(recorded) == _hash(planned)
    return Path(recorded).name == Path(planned).name


def same_config(recorded: dict[str, Any], planned: RunConfig) -> bool:
    """Whether a record's configuration is the planned one (device aside; data files as above)."""
    a, b = _comparable(recorded), _comparable(planned)
    for key in ("train", "valid"):
        if not _same_file(a.pop(key, None), b.pop(key, None)):
            return False
    return a == b


def changed_data(record: dict[str, Any], config: RunConfig) -> str | None:
    """Why the data a record was trained or scored on is not the data planned now, or None.
    Records from before data hashes were kept cannot tell, and stand."""
    data = record.get("data")
    if not isinstance(data, dict):
        return None
    for key, what in (("train", "training"), ("valid", "validation")):
        path, recorded = getattr(config, key), data.get(key)
        if not path or not isinstance(recorded, dict) or not Path(path).is_file():
            continue
        now = _hash(path)
        if recorded.get("sha256") != now:
            return f"the {what} file {path} changed since this run (sha256 {str(recorded.get('sha256'))[:12]} -> {now[:12]})"
    return None


_REQUIRED = ("status", "config", "trainable_params", "total_params", "train_seconds", "peak_memory_mb", "loss")


def record_state(folder: Path, config: RunConfig) -> tuple[str, str]:
    """('done' | 'redo' | 'resume', why) for a planned run's folder; a different configuration is an error.
    'resume': the run stopped with a checkpoint (`runs/checkpoint.py`), and `run` goes on from it."""
    path = folder / RECORD
    if not path.exists():
        return "redo", "not run yet"
    try:
        record = read_record(path)
    except FutureRecord:
        raise  # a newer loralab's run: not ours to redo
    except LoralabError as e:
        return "redo", f"unreadable record ({e})"
    if isinstance(record.get("config"), dict) and not same_config(record["config"], config):
        raise LoralabError(
            f"{path}: this folder holds a run with a different configuration than the experiment plans; "
            f"use another --out folder, or remove {folder} to rerun it"
        )
    changed = changed_data(record, config)
    if changed:
        return "redo", changed
    status = record.get("status")
    if status == "running":
        if (folder / "checkpoint" / "checkpoint.json").is_file():
            return "resume", "unfinished; resuming from its checkpoint"
        return "redo", "unfinished (the previous sweep stopped during this run)"
    missing = [key for key in _REQUIRED if key not in record]
    if status == "diverged":
        return ("done", "diverged") if "diverged_at_step" in record else ("redo", "incomplete record")
    if status != "completed" or missing:
        return "redo", f"incomplete record (status {status!r}, missing {', '.join(missing) or 'nothing'})"
    if config.valid and "valid" not in record:
        return "redo", "incomplete record (no validation metrics)"
    weights = folder / record.get("weights", WEIGHTS)
    # run() writes the weights before the completed record, so absent weights were removed on
    # purpose (results committed without them) and the record still stands; damaged ones do not.
    if weights.is_file() and file_sha256(weights) != record.get("weights_sha256"):
        return "redo", "weights do not match the record"
    return "done", "completed" if weights.is_file() else "completed (weights not kept)"


def _release_memory() -> None:
    """Return the previous run's freed memory to the OS, so the next run's peak RSS (measured from the
    current RSS up) starts near the live baseline rather than on the allocator's leftovers."""
    release_heap(collect=True)


def _clear(folder: Path) -> None:
    """Remove a stale record, weights and checkpoint so a redone run never pairs a new record with old weights."""
    for name in (RECORD, WEIGHTS):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "checkpoint", ignore_errors=True)


def rerun(run_fn: Callable[..., dict], config: RunConfig, folder: Path, *, resume: bool = False, **kwargs: Any) -> dict:
    """Run `config` into `folder` afresh (stale files removed), or with `resume` on from its checkpoint;
    the previous run's memory released first."""
    if not resume:
        _clear(folder)
    _release_memory()
    return run_fn(config, folder, **kwargs)
