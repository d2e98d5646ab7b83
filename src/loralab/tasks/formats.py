"""Records from JSON Lines, JSON arrays, Parquet files and `datasets` folders, for `tasks.table`.

Each reader returns (row, record) pairs and refuses what it cannot read in one line naming the file
and the line or row: bad JSON, a key given twice in one object, a record that is not an object, an
integer past Python's digit limit, nesting past its recursion limit. Parquet and `datasets` folders
need the optional `formats` extra (pyarrow, datasets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loralab.errors import LoralabError

Records = list[tuple[int, dict]]


def _object(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


class _Duplicate(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _parse(path: Path, where: str, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_object)
    except _Duplicate as e:
        raise LoralabError(f"{path}, {where}: key {e.key!r} given twice in one object; keep one") from None
    except json.JSONDecodeError as e:
        raise LoralabError(f"{path}, {where}: not JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # an integer past the digit limit
        raise LoralabError(f"{path}, {where}: not readable JSON ({e})") from None
    except RecursionError:
        raise LoralabError(f"{path}, {where}: not readable JSON (nested too deeply)") from None


def _checked(path: Path, where: str, record: Any) -> dict:
    if not isinstance(record, dict):
        raise LoralabError(f"{path}, {where}: expected a JSON object, got {type(record).__name__}")
    return record


def json_lines(path: Path, text: str) -> Records:
    """One JSON object per line; blank lines skipped; rows are line numbers."""
    records = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            records.append((line, _checked(path, f"line {line}", _parse(path, f"line {line}", raw))))
    return records


def json_array(path: Path, text: str) -> Records:
    """A JSON array of objects; the first is row 2, as in a CSV export with its header."""
    data = _parse(path, "line 1", text)
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}, as some exports wrap it
    if not isinstance(data, list):
        raise LoralabError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    return [(i + 2, _checked(path, f"row {i + 2}", record)) for i, record in enumerate(data)]


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise LoralabError(f"reading this file needs {module.split('.')[0]}: pip install 'loralab[formats]'") from None


def read_parquet(path: Path) -> Records:
    """A Parquet file's rows as records; the first is row 2."""
    if not path.is_file():
        raise LoralabError(f"{path}: file not found")
    parquet = _need("pyarrow.parquet")
    try:
        rows = parquet.read_table(path).to_pylist()
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise LoralabError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())})") from None
    return [(i + 2, row) for i, row in enumerate(rows)]


def read_dataset_folder(path: Path, split: str | None) -> Records:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`; `split` picks one of a
    DatasetDict's splits (not needed where it holds one)."""
    markers = ("dataset_dict.json", "dataset_info.json", "state.json")
    if not any((path / name).is_file() for name in markers):
        raise LoralabError(f"{path}: is a directory, not a datasets folder (save_to_disk); loralab reads CSV, TSV, "
                           "JSON Lines, JSON, Parquet or a datasets folder")
    datasets = _need("datasets")
    try:
        data = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as e:
        raise LoralabError(f"{path}: not a readable datasets folder ({' '.join(str(e).split())})") from None
    if isinstance(data, datasets.DatasetDict):
        splits = list(data)
        if split is None and len(splits) == 1:
            split = splits[0]
        if split not in data:
            raise LoralabError(f"{path}: " + (f"no split {split!r}" if split else "several splits")
                               + f" (it holds {', '.join(splits)}); choose one with --split")
        data = data[split]
    elif split is not None and split != str(data.split):
        raise LoralabError(f"{path}: holds one dataset ({data.split or 'no split name'}), not split {split!r}")
    return [(i + 2, row) for i, row in enumerate(data.to_list())]
