"""Run folders on disk: the `run.json` record and the trained weights, written atomically.

A record or weights file is first written beside its destination and then renamed over it, so a
run killed at any moment leaves either the old file or the new one, never half of one. Weights are
safetensors only: nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from loralab.errors import LoralabError, disk_full

RECORD = "run.json"
WEIGHTS = "weights.safetensors"


def temporary_prefix(name: str) -> str:
    """The prefix of a file's temporary sibling: `.NAME.`, NAME cut so that the whole temporary name (the
    prefix, 8 random characters and `.tmp`) fits in 255 bytes however long the destination's name is."""
    return "." + os.fsencode(name)[:200].decode("utf-8", "ignore") + "."


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_mode(path: Path, folder: bool = False) -> int:
    """The mode a file loralab writes gets: the one `path` has when it is overwritten, else what `open`
    would give (0666, or 0777 for a folder, under the umask); mkstemp's own 0600 would hide results."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return (0o777 if folder else 0o666) & ~umask()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, new_mode(path))  # after: a writer may have made the file anew (safetensors does)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if disk_full(e):
            raise LoralabError(f"{path}: cannot write ({disk_full(e)}); the file is as it was") from None
        raise


# What a write killed before its rename leaves: `_atomic_write`'s `.NAME.XXXXXXXX.tmp`, and the bare
# `tmpXXXXXXXX` / `.tmpXXXXXXXX` names that tempfile's defaults gave in earlier versions.
_LEFTOVER = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$|^\.?tmp[A-Za-z0-9_]{8}$")


def remove_leftovers(folder: str | Path) -> list[str]:
    """Remove the temporary files that a run killed while saving left in its `folder`; their names."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if _LEFTOVER.match(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def strict(value: Any) -> Any:
    """`value` with every non-finite float replaced by the string "NaN", "Infinity" or "-Infinity".

    JSON has no such numbers (Python's `json` writes bare NaN, which other readers refuse); the
    strings read back with `float()`, so a loss curve that ended in inf is still plotted as one.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write strict JSON (no NaN or Infinity, see `strict`) atomically."""
    text = json.dumps(strict(data), indent=2, allow_nan=False) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    _atomic_write(Path(path), write)


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open() as f:
            data = json.load(f)
    except FileNotFoundError:
        raise LoralabError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: bad JSON, or an integer past Python's limit
        raise LoralabError(f"{path}: not a readable JSON record ({e})") from None
    except RecursionError:
        raise LoralabError(f"{path}: not a readable JSON record (nested too deeply)") from None
    if not isinstance(data, dict):
        raise LoralabError(f"{path}: expected a JSON object")
    return data


def mark_failed(path: str | Path, error: BaseException) -> None:
    """The 'running' record at `path` marked 'failed' with why, where the disk still takes it (a failed
    weights write has removed its temporary file by now, so a record of a few KB usually fits)."""
    try:
        record = read_json(path)
    except LoralabError:
        return
    if record.get("status") == "running":
        record.update(status="failed", error=" ".join(str(error).split()))
        with contextlib.suppress(LoralabError, OSError):
            write_json(path, record)


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Save tensors as safetensors atomically; returns the file's sha256."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return file_sha256(path)


def load_weights(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise LoralabError(f"{path}: weights file missing")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise LoralabError(f"{path}: weights file does not match its record (truncated or modified)")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise LoralabError(f"{path}: not a valid safetensors file ({e})") from None


def file_sha256(path: str | Path) -> str:
    """A file's sha256; for a folder (a datasets folder), the sha256 of its files' names and contents."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored in a safetensors header (empty when there is none)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise LoralabError(f"{path}: not a valid safetensors file ({e})") from None


def load_state_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path,
                    required: Iterable[str] = ()) -> None:
    """Copy saved tensors into the model, refusing unknown names, wrong shapes and missing `required` names."""
    missing = sorted(set(required) - set(tensors))
    if missing:
        raise LoralabError(f"{source}: missing {len(missing)} tensor(s) the model needs, e.g. {missing[0]!r} "
                           "(saved by a different strategy, or an incomplete file?)")
    state = model.state_dict()
    for name, tensor in tensors.items():
        if name not in state:
            raise LoralabError(f"{source}: tensor {name!r} has no place in this model (different strategy or base model?)")
        if state[name].shape != tensor.shape:
            raise LoralabError(
                f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, the model expects {tuple(state[name].shape)}"
            )
    model.load_state_dict(tensors, strict=False)
