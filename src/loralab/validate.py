"""Checks on what a user gives: numbers (finite, in range) and output paths (writable, no clobbering).

Every configuration class and every CLI option calls these, so a number is judged by one rule
wherever it comes from: `--lora-alpha inf` and `lora_alpha: .inf` in an experiment file give the
same message. A `SettingError` names the setting by its dotted `RunConfig.flat()` name
(`strategy.lora.alpha`); the CLI translates that into its option (`--lora-alpha`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

from loralab.errors import LoralabError


class SettingError(LoralabError):
    """A setting with a value outside what it accepts."""

    def __init__(self, name: str, value: Any, expected: str):
        self.name, self.value, self.expected = name, value, expected
        shown = f"{name} {value!r}" if name.startswith("--") else f"{name}={value!r}"  # an option, or a setting
        super().__init__(f"invalid {shown}: expected {expected}")

    def renamed(self, name: str) -> "SettingError":
        return SettingError(name, self.value, self.expected)


def number(name: str, value: Any, *, integer: bool = False, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, optional: bool = False) -> Any:
    """`value` if it is a finite number (an int when `integer`) within [low, high]; else a SettingError.

    `low_open`/`high_open` exclude the bound itself; `optional` lets None through.
    """
    if value is None and optional:
        return value
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    expected = kind + (" " + " and ".join(bounds) if bounds else "") + (" (or none)" if optional else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingError(name, value, expected)
    if integer and not isinstance(value, int):
        raise SettingError(name, value, expected)
    if isinstance(value, int) and abs(value) >= 2**63:  # beyond any count or seed; and float() would overflow
        raise SettingError(name, value, expected + " (within 64 bits)")
    if not math.isfinite(value):
        raise SettingError(name, value, expected)
    if low is not None and (value < low or (low_open and value == low)):
        raise SettingError(name, value, expected)
    if high is not None and (value > high or (high_open and value == high)):
        raise SettingError(name, value, expected)
    return value


def names(name: str, value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    """A list of non-empty strings (a single string is one name) as a tuple; else a SettingError."""
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SettingError(name, value, "a list of names")
    if not value and not allow_empty:
        raise SettingError(name, value, "at least one name")
    return tuple(value)


def output_folder(path: str | Path, option: str, *, forbid: Iterable[str] = (), nonempty_ok: bool = True) -> Path:
    """A folder a command will write into: refused when it is a file, when it already holds one of
    the `forbid` names, or (unless `nonempty_ok`) when it holds anything at all."""
    path = Path(path)
    _name_fits(path, option)
    if path.exists() and not path.is_dir():
        raise LoralabError(f"{option} {path}: exists and is not a folder")
    if path.is_dir():
        present = [n for n in forbid if (path / n).exists()]
        if present:
            raise LoralabError(f"{option} {path}: already holds {present[0]}; choose another folder or remove it")
        if not nonempty_ok and any(path.iterdir()):
            raise LoralabError(f"{option} {path}: the folder is not empty; choose a new or empty folder")
    _writable_parent(path, option)
    return path


def output_file(path: str | Path, option: str, *, inputs: Iterable[str | Path] = ()) -> Path:
    """A file a command will (re)write: refused when it is a folder, or one of the command's inputs."""
    path = Path(path)
    _name_fits(path, option)
    if path.is_dir():
        raise LoralabError(f"{option} {path}: is a folder; give a file name")
    for source in inputs:
        if source is not None and Path(source).exists() and path.exists() and path.samefile(source):
            raise LoralabError(f"{option} {path}: is also an input of this command; writing it would destroy it")
    _writable_parent(path, option)
    return path


def _name_limit(path: Path) -> int:
    """The longest file name (in bytes) the file system holding `path`'s nearest existing folder allows."""
    for folder in path.absolute().parents:
        if folder.is_dir():
            try:
                return os.pathconf(folder, "PC_NAME_MAX")
            except (OSError, ValueError):
                break
    return 255


def _name_fits(path: Path, option: str) -> None:
    """Refuse a name the file system cannot hold (asking whether it exists would already fail: Errno 36)."""
    limit = _name_limit(path)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise LoralabError(f"{option}: the name {part[:40]}... is {len(os.fsencode(part))} bytes long; "
                               f"this file system allows {limit}")


def _writable_parent(path: Path, option: str) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise LoralabError(f"{option} {path}: {parent} is a file, not a folder")
            return
