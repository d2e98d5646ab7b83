"""MkDocs hook: the command-line reference, generated from `loralab.cli.build_parser()` at build time.

The page `reference/cli.md` holds a marker; this hook replaces it with every subcommand and every
option, its default and its help, read from the parser itself, so the page cannot drift from
`loralab --help`. Only argparse's action attributes are read (option strings, default, help,
choices, required), so it stays right however the parser is built.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MARKER = "<!-- cli-reference -->"
PAGE = "reference/cli.md"


def _src_on_path(config_file: str | None) -> None:
    """Import loralab from this checkout's `src/`, as mkdocstrings reads it, not from an older install."""
    root = Path(config_file).resolve().parent if config_file else Path.cwd()
    src = str(root / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _help(action: argparse.Action, prog: str) -> str:
    """The help text as `--help` prints it (argparse expands `%(default)s` and unescapes `%%`)."""
    if not action.help:
        return ""
    params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = prog
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    try:
        return action.help % params
    except (KeyError, TypeError, ValueError):
        return action.help


def _option(action: argparse.Action) -> str:
    """How the option is written: its flags (both forms of a --x/--no-x pair), its value and choices."""
    if not action.option_strings:  # a positional argument
        name = action.metavar or action.dest
        return f"`{name.upper()}`" + (" (optional)" if action.nargs == "?" else "")
    flags = " / ".join(f"`{s}`" for s in action.option_strings)
    if action.nargs == 0:
        return flags
    if action.choices is not None:  # in code: attr_list would read a bare {...} as attributes
        return f"{flags} `{{{','.join(map(str, action.choices))}}}`"
    metavar = action.metavar or action.dest.upper()
    return f"{flags} `{metavar}`" + (" (value optional)" if action.nargs == "?" else "")


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.default is argparse.SUPPRESS and isinstance(action.help, str) and action.help.endswith(")"):
        # a setting's option: absent unless given, its default (from the settings table) closes its help
        said = action.help.rpartition("(default: ")[2][:-1]
        return f"`{said}`" if said else ""
    if isinstance(action, argparse.BooleanOptionalAction):
        return "on" if action.default else "off"
    if action.nargs == 0:  # store_true / store_false flags; --version and the like have no default
        return {False: "off", True: "on"}.get(action.default, "")
    if action.default is None or action.default is argparse.SUPPRESS:
        return ""
    return f"`{action.default}`"


def _visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if a.help is not argparse.SUPPRESS and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def _table(parser: argparse.ArgumentParser) -> list[str]:
    lines = ["| option | default | what it does |", "|---|---|---|"]
    for action in _visible(parser):
        lines.append(f"| {_option(action)} | {_default(action)} | {_cell(_help(action, parser.prog))} |")
    return lines


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Each subcommand's name -> (its parser, its one-line help), in the parser's order."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found[name] = (sub, helps.get(name, ""))
    return found


def render(parser: argparse.ArgumentParser) -> str:
    """The whole reference as Markdown: the command's own options, then one section per subcommand."""
    lines = [f"`{parser.prog}` options:", "", *_table(parser), ""]
    for name, (sub, help_) in subcommands(parser).items():
        lines += [f"## `{parser.prog} {name}`", "", _cell(help_[:1].upper() + help_[1:]) + "." if help_ else "", ""]
        if sub.description:
            lines += [_cell(sub.description), ""]
        lines += ["```text", sub.format_usage().strip(), "```", "", *_table(sub), ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER!r}: the CLI reference has nowhere to go")
    _src_on_path(config.config_file_path)
    from loralab.cli import build_parser

    return markdown.replace(MARKER, render(build_parser()))
