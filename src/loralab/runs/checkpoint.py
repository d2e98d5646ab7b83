"""A run's checkpoint on disk, and whether a run folder may be resumed from it.

`checkpoint/` in the run folder holds `state-<step>.safetensors` (every tensor of the loop's
snapshot, `loralab.training.snapshot`, plus the best weights so far when evaluating) and
`checkpoint.json` (the snapshot's plain values, the step hooks' own state and the tensors' sha256).
The tensors are written first and the JSON last, each atomically, so the JSON always names a
complete tensors file: a run killed at any moment leaves the previous checkpoint or the new one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from loralab.errors import LoralabError
from loralab.runs.artifacts import RECORD, WEIGHTS, load_weights, read_json, save_weights, write_json
from loralab.runs.state import changed_data, same_config
from loralab.settings import RunConfig
from loralab.training.snapshot import Snapshot

FOLDER = "checkpoint"
INDEX = "checkpoint.json"


def save_checkpoint(out_dir: Path, snapshot: Snapshot, hooks: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a snapshot (and `extra` tensors, the best weights) as the run's latest checkpoint."""
    folder = Path(out_dir) / FOLDER
    name = f"state-{snapshot.step:07d}.safetensors"
    sha = save_weights(folder / name, {**snapshot.tensors, **(extra or {})}, {"format": "loralab-checkpoint"})
    write_json(folder / INDEX, {"step": snapshot.step, "tensors": name, "sha256": sha, "meta": snapshot.meta,
                                "hooks": hooks})
    for old in folder.glob("state-*.safetensors"):  # only after the new one is named by the index
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / INDEX


def load_checkpoint(out_dir: Path) -> tuple[Snapshot, dict[str, Any], dict[str, Any]] | None:
    """(the loop's snapshot, the hooks' state, the other tensors) of the latest checkpoint; None without one."""
    index = Path(out_dir) / FOLDER / INDEX
    if not index.is_file():
        return None
    data = read_json(index)
    tensors = load_weights(index.parent / data["tensors"], data["sha256"])
    mine = {k: v for k, v in tensors.items() if not k.startswith("best/")}
    extra = {k: v for k, v in tensors.items() if k.startswith("best/")}
    return Snapshot(mine, data["meta"]), data["hooks"], extra


def remove_checkpoint(out_dir: Path) -> None:
    shutil.rmtree(Path(out_dir) / FOLDER, ignore_errors=True)


def resumable(out_dir: Path, config: RunConfig) -> bool:
    """Whether `out_dir` holds this very run, unfinished, with a checkpoint to go on from."""
    out_dir = Path(out_dir)
    try:
        record = read_json(out_dir / RECORD)
    except LoralabError:
        return False
    return (record.get("status") == "running" and isinstance(record.get("config"), dict)
            and same_config(record["config"], config) and (out_dir / FOLDER / INDEX).is_file()
            and changed_data(record, config) is None)


def check_folder(out_dir: Path, config: RunConfig, option: str = "--out") -> bool:
    """Whether `loralab train` resumes `out_dir` (True) or starts afresh (False); a folder holding
    anything else is refused, saying which case it is."""
    out_dir = Path(out_dir)
    record_path = out_dir / RECORD
    if not record_path.exists():
        if (out_dir / WEIGHTS).exists():
            raise LoralabError(f"{option} {out_dir}: already holds {WEIGHTS}; choose another folder or remove it")
        return False
    record = read_json(record_path)
    status = record.get("status")
    if status != "running":
        raise LoralabError(f"{option} {out_dir}: already holds a finished run (status {status!r}); choose another "
                           "folder or remove it")
    if not isinstance(record.get("config"), dict) or not same_config(record["config"], config):
        raise LoralabError(f"{option} {out_dir}: holds an unfinished run of a different configuration; rerun its own "
                           "command to resume it, or choose another folder")
    changed = changed_data(record, config)
    if changed:
        raise LoralabError(f"{option} {out_dir}: holds an unfinished run, but {changed}; remove the folder to start "
                           "again")
    if not (out_dir / FOLDER / INDEX).is_file():
        raise LoralabError(f"{option} {out_dir}: holds an unfinished run without a checkpoint to resume from (it ran "
                           "without --checkpoint-every, or stopped before its first); remove the folder to start again")
    return True
