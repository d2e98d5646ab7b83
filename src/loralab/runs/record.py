"""What a `run.json` record may hold: each known field's type, and the version that wrote it.

Every reader of records (loading a run, scoring, resume, reports) reads through `read_record`, so
a hand-edited or damaged record ("weights": 5, "valid": "good") is refused in one line naming the
field, never met later as a TypeError. A record written by a newer loralab is refused as well:
its fields may mean something this version does not know.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loralab.errors import LoralabError
from loralab.runs.artifacts import read_json
from loralab.version import __version__


class FutureRecord(LoralabError):
    """A record written by a later loralab than this one."""


_TEXT = ("status", "task", "strategy", "metric", "scoring", "weights", "weights_sha256", "loralab_version",
         "created", "device", "machine", "cpu", "diverged_reason", "started_from_adapter", "error")
_MAPPING = ("base_model", "config", "hyperparameters", "valid", "label_space", "data", "quantization", "half_base",
            "distributed")
_NUMBER = ("peak_memory_mb", "train_seconds", "median_step_seconds", "tokens_per_second", "trainable_params",
           "total_params", "steps", "train_examples", "adapted_modules", "diverged_at_step")
_NUMBERS = ("loss", "step_seconds")
_BASE_TEXT = ("name", "path", "model_type", "fingerprint")
_NON_FINITE = ("NaN", "Infinity", "-Infinity")


def is_number(value: Any) -> bool:
    """A number, or one of the strings strict JSON records non-finite numbers as."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in _NON_FINITE


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_record(record: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """`record` itself when each field it has is of its type and its version is not newer than this loralab's."""
    version = record.get("loralab_version")
    if isinstance(version, str) and _version(version) > _version(__version__):
        raise FutureRecord(f"{source}: written by loralab {version}, newer than this loralab {__version__}; "
                           "upgrade loralab to read it")

    def bad(name: str, expected: str) -> LoralabError:
        return LoralabError(f"{source}: field {name!r} is {_kind(record[name])}, expected {expected}")

    for name in _TEXT:
        if name in record and not isinstance(record[name], str):
            raise bad(name, "a string")
    for name in _MAPPING:
        if name in record and not isinstance(record[name], dict):
            raise bad(name, "an object")
    for name in _NUMBER:
        if name in record and not is_number(record[name]):
            raise bad(name, "a number")
    for name in _NUMBERS:
        if name in record and not (isinstance(record[name], list) and all(map(is_number, record[name]))):
            raise bad(name, "a list of numbers")
    if "head" in record and not (isinstance(record["head"], list) and all(isinstance(h, str) for h in record["head"])):
        raise bad("head", "a list of names")
    for name in _BASE_TEXT:
        value = record.get("base_model", {}).get(name)
        if value is not None and not isinstance(value, str):
            raise LoralabError(f"{source}: field 'base_model.{name}' is {_kind(value)}, expected a string")
    for name, value in record.get("valid", {}).items():
        if name != "path" and value is not None and not is_number(value):
            raise LoralabError(f"{source}: field 'valid.{name}' is {_kind(value)}, expected a number")
    return record


def read_record(path: str | Path) -> dict[str, Any]:
    """A run record read and checked (`check_record`); anything wrong is a `LoralabError` naming the file."""
    return check_record(read_json(path), path)


def read_manifest_runs(path: str | Path) -> list[tuple[str, list[str]]]:
    """(folder, labels) of each run a `sweep.json` lists; a malformed manifest is refused in one line."""
    data = read_json(path)
    runs = data.get("runs", [])
    if not isinstance(runs, list):
        raise LoralabError(f"{path}: field 'runs' is {_kind(runs)}, expected a list")
    out = []
    for i, run in enumerate(runs):
        if not (isinstance(run, dict) and isinstance(run.get("folder"), str)
                and isinstance(run.get("labels", []), list) and all(isinstance(x, str) for x in run.get("labels", []))):
            raise LoralabError(f"{path}: runs[{i}] is not {{\"folder\": a name, \"labels\": a list of names}}")
        out.append((run["folder"], list(run.get("labels", []))))
    return out
