"""The one table of settings: every setting declared once, on its config dataclass's field.

A field declared with `setting(default, "one-line doc", ...)` carries everything the rest of loralab
needs to know about it: its CLI flag, its experiment-file key (and older names), its short name in run
folder names, its label in reports, and whether it is part of a run's identity (two records that
differ only in a setting outside the identity are the same run: where it ran, how often its heap was
trimmed). `SettingsTable.of(RunConfig)` walks the nested dataclasses into the table; the CLI's options
and `--help`, experiment keys, report labels, resume's identity check and the searches' keys are all
read from it, so adding a setting is one edit: one field.

This module imports no torch, so `loralab --help` starts fast.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from loralab.validate import SettingError

METADATA = "loralab.setting"
_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class Setting:
    """What loralab knows about one setting, besides its field's name, type and default."""

    doc: str
    """One line: what the setting does (the CLI's help text and the reference docs)."""
    key: str | None = None
    """Its name in experiment files (None: the field's name); the dotted path always works too."""
    flag: str | None = None
    """Its command-line option (None: `--` and the key with dashes; "" : none)."""
    aliases: tuple[str, ...] = ()
    """Older keys (and `--` flags) that still mean this setting; hidden from help."""
    folder: str | None = None
    """Its name in run folder names (`alpha-128`); None: the field's name."""
    label: str | None = None
    """Its name in reports; None: the field's name."""
    identity: bool = True
    """Part of what a run is: resume redoes or refuses a folder whose record differs in it."""
    compared: bool | None = None
    """A report tells rows apart by it (None: as `identity`; a seed is identity, not compared)."""
    choices: tuple[str, ...] | None = None
    """The values it takes, where they are a fixed list."""
    negate: bool = False
    """The flag sets the opposite (`--online` sets offline to false)."""
    keep_empty: bool = False
    """A list setting keeps empty names (`--columns source,label,,sentence` skips a column)."""
    metavar: str | None = None
    """The placeholder `--help` shows for its value."""
    cli_default: str | None = None
    """What `--help` says the default is, where the field's own default says less (None means 'auto')."""

    # Filled in by the table from the field.
    path: str = ""
    """Its dotted place in `run.json`'s config (`strategy.lora.alpha`)."""
    name: str = ""
    """The field's name."""
    default: Any = None
    """The field's default."""
    kind: str = "str"
    """How a value written as text is read: bool, int, float, str or list."""
    optional: bool = False
    """None is a value (no limit, no seed ...)."""

    @property
    def experiment_key(self) -> str:
        return self.key or self.name

    @property
    def option(self) -> str | None:
        if self.flag == "":
            return None
        return self.flag or "--" + self.experiment_key.replace("_", "-")

    @property
    def folder_name(self) -> str:
        return self.folder or self.name

    @property
    def report_label(self) -> str:
        return self.label or self.name

    @property
    def in_reports(self) -> bool:
        return self.identity if self.compared is None else self.compared

    def parse(self, text: str) -> Any:
        """A value written as text (a command-line option) as the setting takes it."""
        if self.optional and text.strip().lower() in ("none", "null"):
            return None
        if self.kind == "list":
            parts = [t.strip() for t in text.split(",")]
            return tuple(parts if self.keep_empty else [p for p in parts if p])
        if self.kind in ("int", "float"):
            try:
                return int(text) if self.kind == "int" else float(text)
            except ValueError:
                raise SettingError(self.option or self.path, text, "an integer" if self.kind == "int" else "a number") from None
        return text

    def shown_default(self) -> str:
        """The default as `--help` shows it."""
        if self.cli_default is not None:
            return self.cli_default
        value = self.default
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, (tuple, list)):
            return ",".join(map(str, value)) or "none"
        if value is None:
            return "none"
        if isinstance(value, bool) and self.negate:
            value = not value
        return str(value).lower() if isinstance(value, bool) else str(value)


def setting(default: Any = _MISSING, doc: str = "", *, default_factory: Callable[[], Any] | Any = _MISSING,
            **details: Any) -> Any:
    """A dataclass field that is a setting: `lr: float = setting(2e-5, "Peak learning rate of AdamW.")`."""
    metadata = {METADATA: Setting(doc=doc, **details)}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def group(factory: Callable[[], Any], doc: str) -> Any:
    """A dataclass field holding a nested config (its settings join the table under the field's name)."""
    return dataclasses.field(default_factory=factory, metadata={METADATA: doc})


def _kind(hint: Any) -> tuple[str, bool]:
    """(kind, optional) of a resolved type hint."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return "list", optional
    for kind in (bool, int, float):
        if hint is kind:
            return kind.__name__, optional
    return "str", optional


class SettingsTable:
    """Every setting of a config dataclass and the configs nested in it, by path, key and flag."""

    def __init__(self, settings: list[Setting]):
        self.settings = tuple(settings)
        self.by_path = {s.path: s for s in self.settings}
        self.by_key: dict[str, Setting] = {}
        self.by_flag: dict[str, Setting] = {}
        for s in self.settings:
            for key in (s.experiment_key, *[a for a in s.aliases if not a.startswith("--")]):
                if key in self.by_key and self.by_key[key] is not s:
                    raise ValueError(f"settings {self.by_key[key].path} and {s.path} share the key {key!r}")
                self.by_key[key] = s
            for flag in (s.option, *[a for a in s.aliases if a.startswith("--")]):
                if flag and flag in self.by_flag:
                    raise ValueError(f"settings {self.by_flag[flag].path} and {s.path} share the flag {flag}")
                if flag:
                    self.by_flag[flag] = s

    @classmethod
    def of(cls, config_class: type) -> "SettingsTable":
        return cls(list(_walk(config_class, "")))

    def __iter__(self) -> Iterator[Setting]:
        return iter(self.settings)

    def __len__(self) -> int:
        return len(self.settings)

    def path(self, name: str) -> str | None:
        """The dotted path of a key, an older name, or a path; None when unknown."""
        if name in self.by_path:
            return name
        found = self.by_key.get(name)
        return found.path if found else None

    def identity(self) -> tuple[str, ...]:
        """The paths of the settings that are part of what a run is."""
        return tuple(s.path for s in self.settings if s.identity)

    def compared(self) -> tuple[str, ...]:
        """The paths a report tells rows apart by."""
        return tuple(s.path for s in self.settings if s.in_reports)


def _walk(config_class: type, prefix: str) -> Iterator[Setting]:
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        meta = f.metadata.get(METADATA)
        if meta is None:
            raise TypeError(f"{config_class.__name__}.{f.name} is not declared with setting() or group()")
        if isinstance(meta, str):  # a nested config
            nested = f.default_factory()  # type: ignore[misc]
            yield from _walk(type(nested), f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not _MISSING else (
            f.default_factory() if f.default_factory is not _MISSING else None)  # type: ignore[misc]
        kind, optional = _kind(hints[f.name])
        if isinstance(default, enum.Enum):
            kind = "str"
        yield dataclasses.replace(meta, path=prefix + f.name, name=f.name, default=default, kind=kind,
                                  optional=optional)


def flat_to_nested(values: dict[str, Any]) -> dict[str, Any]:
    """{"training.lr": 1e-3} -> {"training": {"lr": 1e-3}}."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        node = out
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out
