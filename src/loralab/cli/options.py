"""The command line's options, generated from the settings tables: one option per setting, shown with its
default, absent from the parsed namespace unless given (so a setting's own default applies), and the
errors of a setting named by its option."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from loralab.errors import LoralabError
from loralab.settings import SETTINGS, RunConfig, TaskConfig
from loralab.settings.commands import CompareOptions, IntrinsicOptions, RecommendOptions
from loralab.settings.table import Setting, SettingsTable
from loralab.validate import SettingError, number

RECOMMEND = SettingsTable.of(RecommendOptions)
INTRINSIC = SettingsTable.of(IntrinsicOptions)
COMPARE = SettingsTable.of(CompareOptions)
_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "list": "A,B"}
PREFIX = "setting:"  # argparse dests of settings: "setting:training.lr"


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), exit status 2 as usual."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _converter(setting: Setting) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return setting.parse(text)
        except SettingError:
            raise ValueError(text) from None

    convert.__name__ = setting.kind if setting.kind in ("int", "float") else "value"
    return convert


def _add(parser: argparse.ArgumentParser, setting: Setting, table: str, default: Any = None) -> None:
    """One setting as an option; absent from the namespace unless given, so the table's default applies."""
    help_ = f"{setting.doc} (default: {setting.shown_default() if default is None else default})".replace("%", "%%")
    dest, kwargs = f"{PREFIX}{table}:{setting.path}", {"default": argparse.SUPPRESS, "help": help_}
    if setting.kind == "bool" and setting.negate:
        parser.add_argument(setting.option, dest=dest, action="store_const", const=not setting.default, **kwargs)
    elif setting.kind == "bool":
        parser.add_argument(setting.option, dest=dest, action=argparse.BooleanOptionalAction, **kwargs)
    else:
        parser.add_argument(setting.option, dest=dest, type=_converter(setting), choices=setting.choices,
                            metavar=setting.metavar or (None if setting.choices else _METAVARS[setting.kind]), **kwargs)


def add_settings(parser: argparse.ArgumentParser, paths: tuple[str, ...] | None = None, *, table: SettingsTable = SETTINGS,
                  name: str = "run", defaults: dict[str, Any] | None = None) -> None:
    group = parser.add_argument_group(f"{name} settings") if name != "run" else parser
    for setting in table:
        if paths is None or setting.path in paths or any(setting.path.startswith(p + ".") for p in paths):
            _add(group, setting, name, (defaults or {}).get(setting.path))


def given(args: argparse.Namespace, table: str = "run") -> dict[str, Any]:
    """The settings given on the command line, by dotted path."""
    prefix = f"{PREFIX}{table}:"
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}


def options(args: argparse.Namespace, table: SettingsTable, name: str) -> dict[str, Any]:
    return {s.path: s.default for s in table} | given(args, name)


def run_config(args: argparse.Namespace) -> RunConfig:
    return RunConfig.from_flat({"device": args.device, **given(args)})


def task_config(args: argparse.Namespace) -> TaskConfig:
    return TaskConfig(**{k[len("task."):]: v for k, v in given(args).items() if k.startswith("task.")})


def set_threads(args: argparse.Namespace) -> None:
    threads = getattr(args, "threads", None)
    if threads is None:
        return
    number("--threads", threads, integer=True, low=1)
    import torch

    torch.set_num_threads(threads)



def mark_required(train: argparse.ArgumentParser, *others: argparse.ArgumentParser) -> None:
    """`--train` is required wherever runs train; `--valid` where runs are compared."""
    for parser in (train, *others):
        for action in parser._actions:
            if action.dest in (f"{PREFIX}run:train", f"{PREFIX}recommend:budget", f"{PREFIX}compare:budget") or (
                    parser is not train and action.dest == f"{PREFIX}run:valid"):
                action.required = True


def option_error(error: SettingError, parser: argparse.ArgumentParser) -> LoralabError:
    """A setting's error named by the option that sets it (`training.lr` -> `--lr`), where there is one."""
    known = {o for action in parser._actions for o in action.option_strings}
    if error.name.startswith("--"):
        return error
    for table in (SETTINGS, INTRINSIC, RECOMMEND, COMPARE):
        setting = table.by_path.get(error.name)
        if setting is not None and setting.option in known:
            return error.renamed(setting.option)
    option = "--" + error.name.replace("_", "-")  # a command's own setting (`d_max`)
    return error.renamed(option) if option in known else error
