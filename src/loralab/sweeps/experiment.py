"""Experiments: one base configuration, then runs and grids over any of its fields, run one by one.

An experiment file (YAML, or TOML with Python >= 3.11) reads:

    name: alpha-sweep                  # optional; the file's stem otherwise
    base:                              # settings shared by every run
      train: data/train.csv            # relative paths resolve against the file's folder
      valid: data/valid.csv
      training.lr: 1e-4                # dotted RunConfig.flat() names ...
      lora_r: 8                        # ... or the friendly aliases in ALIASES
    runs:
      - name: full                     # a label the report shows
        strategy: full
        seeds: [0, 1, 2]               # repeats: shorthand for a grid over training.seed
      - name: lora-alpha
        strategy: lora
        grid: {lora_alpha: [8, 32, 128]}   # the Cartesian product of every list

Each expanded run gets a folder named from the settings that set it apart from the base, so a name
is stable across invocations and readable (`lora_alpha-128_seed-0`). `sweep()` runs what is not
finished (`loralab.sweeps.sweep`) and leaves a `run.json` per folder: a record that is complete and matches its planned
configuration is kept; one that is unfinished (status "running": the process died mid-run, even by
`kill -9`), unreadable or incomplete is redone; one that holds a *different* configuration is
refused, since reusing it would silently mix two experiments. Records are written atomically by
`loralab.runs` (what counts as finished is decided in `loralab.runs.state`), so a kill never leaves half
a record behind.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from loralab.errors import LoralabError
from loralab.settings import SETTINGS, RunConfig, identity
from loralab.settings.table import flat_to_nested
from loralab.tasks.table import read_text

MANIFEST = "sweep.json"

# Every setting's experiment key (`lora_r`) and older names, from the one table; dotted paths work as well.
ALIASES = {key: setting.path for key, setting in SETTINGS.by_key.items()}
_PATHS = ("train", "valid", "model")
_WITH_THE_DATA = ("valid", "task.name", "task.text", "task.text_pair", "task.label", "task.columns")
_ENTRY_KEYS = ("name", "grid", "seeds")
_TOP_KEYS = ("name", "description", "base", "runs")


@dataclass(frozen=True)
class PlannedRun:
    """One expanded run of an experiment: its configuration and the folder it lives in."""

    folder: str
    """Folder name inside the sweep's output folder."""
    config: RunConfig
    """What the run trains."""
    labels: tuple[str, ...]
    """The names of the experiment entries that asked for it (several when entries overlap)."""


@dataclass(frozen=True)
class Experiment:
    """An experiment file, expanded into its runs."""

    name: str
    """The experiment's name."""
    source: str
    """Where it was read from."""
    runs: tuple[PlannedRun, ...]
    """Every run, in file order, without duplicates."""
    description: str = ""
    """Free text from the file."""


def _short(path: str) -> str:
    setting = SETTINGS.by_path.get(path)
    return setting.folder_name if setting else path.rsplit(".", 1)[-1]


def _defaults() -> dict[str, Any]:
    return RunConfig(train="").flat()


def _canonical(key: str, known: dict[str, Any], where: str) -> str:
    key = ALIASES.get(key, key)
    if key not in known:
        options = ", ".join(sorted(set(known) | set(ALIASES)))
        raise LoralabError(f"{where}: unknown setting {key!r} (known: {options})")
    return key


def _flatten(settings: dict[str, Any], known: dict[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and dotted names both become dotted RunConfig.flat() names."""
    if not isinstance(settings, dict):
        raise LoralabError(f"{where}: expected a mapping of settings, got {settings!r}")
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, known, where, prefix=f"{name}."))
        else:
            out[_canonical(name if prefix else str(key), known, where)] = value
    return out


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    """Give a value its field's type: YAML reads `1e-5` as a string, and `512` as an int for a float field.
    Ranges are not checked here: the configuration classes judge every value by one rule (`validate`)."""
    expected = ("a list of names" if isinstance(default, list) else "a path or name" if key in _PATHS
                else type(default).__name__)
    bad = LoralabError(f"{where}: invalid value {value!r} for {key} (expected {expected})")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
    elif isinstance(default, float):
        if isinstance(value, bool):
            raise bad
        try:
            value = float(value)
        except (TypeError, ValueError, OverflowError):
            raise bad from None
    elif isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif isinstance(default, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad
    elif key in _PATHS:
        if not (isinstance(value, str) or (value is None and key == "valid")) or (value and "\0" in value):
            raise bad
    elif key in ("training.max_steps", "training.theta_lr", "train_limit", "valid_limit", "train_sample_seed"):
        if isinstance(value, float) and value.is_integer() and key != "training.theta_lr":
            value = int(value)
        if isinstance(value, str) and key == "training.theta_lr":
            try:
                value = float(value)
            except ValueError:
                raise bad from None
    return value


def _resolve_paths(flat: dict[str, Any], folder: Path) -> dict[str, Any]:
    flat = dict(flat)
    for key in ("train", "valid"):
        if flat.get(key):
            flat[key] = str((folder / flat[key]).resolve())
    model = flat.get("model")
    try:
        local = bool(model) and (folder / model).exists()
    except OSError:  # a name no file system holds (too long, say): a packaged or hub name, then
        local = False
    if local:  # a local model folder; otherwise a packaged or hub name
        flat["model"] = str((folder / model).resolve())
    return flat


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(_format(v) for v in value)
    if value is None:
        return "none"
    text = str(value)
    if "/" not in text:
        return text
    path = Path(text)  # a data file: its folder says which data set (GLUE's files are all train.tsv)
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem


def _folder_name(flat: dict[str, Any], base: dict[str, Any]) -> str:
    """Strategy first, then every setting that differs from the base, then the seed."""
    parts = [_format(flat["strategy.strategy"])]
    for key, value in flat.items():
        if key in ("strategy.strategy", "training.seed") or base.get(key) == value:
            continue
        if key in _WITH_THE_DATA:  # the training file names the data set; these go with it
            continue
        parts.append(_format(value) if key == "train" else f"{_short(key)}-{_format(value)}")
    parts.append(f"seed-{flat['training.seed']}")
    name = "_".join(parts)
    name = "".join(c if c.isalnum() or c in "-_.+" else "-" for c in name)
    if len(name) > 120:
        name = f"{name[:100]}-{_digest(flat)}"
    return name


def _digest(data: Any) -> str:
    import hashlib

    try:
        text = json.dumps(data, sort_keys=True, default=str)
    except TypeError:  # keys that do not sort together (None beside a string): their repr still names them
        text = repr(data)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _read_file(path: Path) -> dict[str, Any]:
    text = read_text(path, "an experiment file", missing="experiment file not found")
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError:
            raise LoralabError(f"{path}: TOML experiment files need Python 3.11 or later; use YAML") from None
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:  # ValueError: past the digit limit
            raise LoralabError(f"{path}: not valid TOML ({e or 'nested too deeply'})") from None
    else:
        import yaml

        try:
            data = yaml.load(text, Loader=_unique_keys(yaml, path))
        except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as e:  # a bad date is a ValueError
            raise LoralabError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise LoralabError(f"{path}: expected a mapping with 'base' and 'runs'")
    return data


def _unique_keys(yaml, path: Path) -> type:
    """A safe YAML loader that refuses a mapping naming one key twice (PyYAML keeps the last one silently;
    TOML refuses it already)."""

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` then overriding one of them is what merge keys are for
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise LoralabError(f"{path}, line {key_node.start_mark.line + 1}: key {key!r} is given twice; "
                                       "keep one")
                seen.add(key) if isinstance(key, (str, int, float, bool)) else None
            return super().construct_mapping(node, deep)

    return Loader


def packaged_experiment(name: str) -> Path:
    """The path of an experiment shipped inside the package (`default`, ...)."""
    source = resources.files("loralab").joinpath("experiments", f"{name}.yaml")
    if not source.is_file():
        shipped = sorted(p.name.removesuffix(".yaml") for p in resources.files("loralab").joinpath("experiments").iterdir()
                         if p.name.endswith(".yaml"))
        raise LoralabError(f"no packaged experiment named {name!r} (shipped: {', '.join(shipped) or 'none'})")
    path = Path(str(source))
    if not path.is_file():  # installed as a zip: the data files beside it could not be opened either
        raise LoralabError(f"packaged experiment {name!r} is not on the file system ({source})")
    return path


def load_experiment(path: str | Path) -> Experiment:
    """Read an experiment file and expand its entries, grids and seeds into runs."""
    try:
        return _load_experiment(Path(path))
    except RecursionError:  # YAML anchors can make a mapping contain itself
        raise LoralabError(f"{path}: a setting refers to itself or nests too deeply") from None


def read_settings(path: str | Path) -> dict[str, Any]:
    """A one-run config file (`loralab train --config`): the settings an experiment's `base` holds, with
    the same keys, as dotted paths; data files and a local model folder are relative to the file."""
    path = Path(path)
    data, defaults = _read_file(path), _defaults()
    flat = {key: _coerce(key, value, defaults[key], str(path))
            for key, value in _flatten(data, defaults, str(path)).items()}
    return _resolve_paths(flat, path.parent)


def _load_experiment(path: Path) -> Experiment:
    data = _read_file(path)
    for key in data:
        if key not in _TOP_KEYS:
            raise LoralabError(f"{path}: unknown top-level key {key!r} (expected: {', '.join(_TOP_KEYS)})")
    defaults = _defaults()
    base_settings = data.get("base") or {}
    if not isinstance(base_settings, dict):
        raise LoralabError(f"{path}: 'base' must be a mapping of settings")
    base = dict(defaults)
    for key, value in _flatten(base_settings, defaults, f"{path}: base").items():
        base[key] = _coerce(key, value, defaults[key], f"{path}: base")

    entries = data.get("runs") or [{}]
    if not isinstance(entries, list):
        raise LoralabError(f"{path}: 'runs' must be a list")
    planned: dict[str, PlannedRun] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise LoralabError(f"{path}: runs[{index}] must be a mapping")
        label = str(entry.get("name", f"run{index}"))
        where = f"{path}: runs[{index}] ({label})"
        settings = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
        fixed = _flatten(settings, defaults, where)
        grid = _flatten(entry.get("grid") or {}, defaults, f"{where} grid")
        if "seeds" in entry:
            if "training.seed" in grid:
                raise LoralabError(f"{where}: give either 'seeds' or a grid over the seed, not both")
            grid["training.seed"] = entry["seeds"]
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise LoralabError(f"{where}: grid values for {key} must be a non-empty list")
        keys = list(grid)
        for combination in itertools.product(*(grid[k] for k in keys)):
            flat = dict(base)
            for key, value in [*fixed.items(), *zip(keys, combination)]:
                flat[key] = _coerce(key, value, defaults[key], where)
            if not flat.get("train"):
                raise LoralabError(f"{where}: no training file: set train in base or in this entry")
            resolved = _resolve_paths(flat, path.parent)
            try:
                config = RunConfig.from_dict(flat_to_nested(resolved))
            except LoralabError as e:
                raise LoralabError(f"{where}: {e}") from None
            name = _folder_name(flat, base)
            existing = planned.get(name)
            if existing is not None and identity(existing.config) != identity(config):
                name = f"{name}-{_digest(config.to_dict())}"
                existing = planned.get(name)
            if existing is None:
                planned[name] = PlannedRun(name, config, (label,))
            elif label not in existing.labels:
                planned[name] = PlannedRun(name, config, existing.labels + (label,))
    return Experiment(name=str(data.get("name", path.stem)), source=str(path), runs=tuple(planned.values()),
                      description=str(data.get("description", "")).strip())
