"""The documentation's commands run as written.

Every command in the fenced `bash` blocks of README.md and docs/quickstart.md is run through bash,
word for word, in a temporary folder that holds tiny data files under the names the commands use
(`train.csv`, `valid.csv`, `test.csv`: a few dozen OpenBookQA questions from the packaged slice).
The rules, and only these, decide what is not run:

- installing is skipped (`python3 -m venv`, activating it, `pip install`): this test runs inside an
  environment that is already installed, and must not reach the network;
- `python -m pytest` is skipped: it is this suite.

A line that chains commands with `&&` runs with those segments left out and the rest kept, so the
set-up line runs as `loralab sweep --default --out runs/demo --threads 1`. `loralab` is this
checkout's: a shim on PATH runs `python -m loralab` with this tree's `src/`.

The demo sweep runs whole (7 runs of 20 steps: about 2 minutes on one thread), so the tests that run
the commands are marked slow. Both documents share one folder, and a command the README already ran
there is not run again for the quick start (the quick start repeats the README's on purpose); run
alone, the quick start's test runs all of its own.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import loralab
from loralab.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = {"README": ROOT / "README.md", "quickstart": ROOT / "docs" / "quickstart.md"}
PACKAGED = Path(loralab.__file__).resolve().parent / "datasets"

# Segments of a command line that are not run, each with the reason.
SKIPPED = {
    r"python3? -m venv\b": "installs",
    r"(\.|source) \S*activate$": "installs",
    r"(python3? -m )?pip install\b": "installs",
    r"python3? -m pytest\b": "is this suite",
}


def bash_commands(document: Path) -> list[str]:
    """Each command line of the document's ```bash blocks, continuation lines joined."""
    commands, block, pending = [], False, ""
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            block = line.strip() == "```bash"
            continue
        if not block:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text and not text.startswith("#"):
            commands.append(text)
    return commands


def python_blocks(document: Path) -> list[str]:
    """The document's ```python blocks, each whole."""
    return re.findall(r"^```python\n(.*?)^```", document.read_text(encoding="utf-8"), flags=re.S | re.M)


def skipped(segment: str) -> str | None:
    """Why a segment is not run, or None when it is."""
    for pattern, reason in SKIPPED.items():
        if re.match(pattern, segment.strip()):
            return reason
    return None


def runnable(command: str) -> str | None:
    """The command with its skipped `&&` segments left out; None when nothing is left."""
    kept = [s.strip() for s in command.split("&&") if not skipped(s)]
    return " && ".join(kept) or None


def loralab_argv(command: str) -> list[list[str]]:
    """The argument lists of the `loralab` invocations in a command line (comments dropped)."""
    found = []
    for segment in command.split("&&"):
        words = shlex.split(segment, comments=True)
        if words and words[0] == "loralab":
            found.append(words[1:])
    return found


def _write_data(folder: Path) -> None:
    """Tiny multiple-choice files: 24 training questions, 16 validation, 16 test without answers."""
    with open(PACKAGED / "openbookqa-train.csv", newline="", encoding="utf-8") as f:
        train = list(csv.DictReader(f))[:24]
    with open(PACKAGED / "openbookqa-test.csv", newline="", encoding="utf-8") as f:
        held_out = list(csv.DictReader(f))[:32]
    for name, rows, columns in (("train.csv", train, list(train[0])),
                                ("valid.csv", held_out[:16], list(train[0])),
                                ("test.csv", held_out[16:], [c for c in train[0] if c != "answer"])):
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


class Workspace:
    """A folder with the tiny data files and a `loralab` on PATH that is this checkout's."""

    def __init__(self, folder: Path):
        self.folder, self.done = folder, set()
        _write_data(folder)
        shims = folder / ".bin"
        shims.mkdir()
        shim = shims / "loralab"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m loralab "$@"\n')
        shim.chmod(0o755)
        python = shims / "python"  # this environment's interpreter (a link would lose the virtualenv)
        python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        python.chmod(0o755)
        self.env = dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ.get('PATH', '')}",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
                        OMP_NUM_THREADS="1", MPLBACKEND="Agg")

    def run(self, command: str) -> None:
        if command in self.done:
            return
        result = subprocess.run(["bash", "-c", command], cwd=self.folder, env=self.env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, (f"`{command}` exited {result.returncode}:\n"
                                        f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        self.done.add(command)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("docs"))


def test_the_documents_hold_the_commands_a_newcomer_runs():
    readme = [runnable(c) for c in bash_commands(DOCUMENTS["README"])]
    assert "loralab sweep --default --out runs/demo --threads 1" in readme  # the set-up line, install left out
    assert None in readme  # `python -m pytest -m "not slow"`: the suite itself, not run here
    for document in DOCUMENTS.values():
        subcommands = {argv[0] for c in bash_commands(document) for argv in loralab_argv(c)}
        assert {"sweep", "train", "evaluate", "predict", "recommend"} <= subcommands, document.name


def test_the_skip_rules_leave_out_installing_and_the_suite_only():
    line = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && loralab sweep --default --out x"
    assert runnable(line) == "loralab sweep --default --out x"
    assert runnable('python -m pytest -m "not slow"') is None
    assert runnable("loralab train --train pip.csv --out runs/x") == "loralab train --train pip.csv --out runs/x"


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_documented_loralab_command_parses(name):
    """A quick check of the slow one below: every option the documents use still exists."""
    parser = build_parser()
    for command in bash_commands(DOCUMENTS[name]):
        for argv in loralab_argv(command):
            try:
                parser.parse_args(argv)
            except SystemExit as e:
                pytest.fail(f"{name}: `loralab {' '.join(argv)}` does not parse (exit {e.code})")


@pytest.mark.slow
def test_the_readme_commands_run_as_written(workspace):
    for command in filter(None, map(runnable, bash_commands(DOCUMENTS["README"]))):
        workspace.run(command)
    folder = workspace.folder
    assert (folder / "runs/demo/report.md").is_file() and (folder / "runs/demo/report.html").is_file()
    assert len(list((folder / "runs/demo").glob("*/run.json"))) == 7  # the demo's seven runs
    assert (folder / "runs/mine/lora/run.json").is_file()
    with open(folder / "submission.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 16
    assert (folder / "runs/recommend/report.md").is_file()
    for block in python_blocks(DOCUMENTS["README"]):  # the Python API, as the README shows it
        workspace.run(f"python -c {shlex.quote(block)}")
    assert (folder / "runs/mine/lora-py/run.json").is_file()


@pytest.mark.slow
def test_the_quickstart_commands_run_as_written(workspace):
    for command in filter(None, map(runnable, bash_commands(DOCUMENTS["quickstart"]))):
        workspace.run(command)
    folder = workspace.folder
    assert (folder / "runs/mine/report.md").is_file()
    assert (folder / "models/lora-merged/config.json").is_file()
    assert (folder / "adapters/lora/adapter_config.json").is_file()


def _hook(name: str):
    """A module of docs/hooks, imported from its file (the hooks are not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_lists_every_subcommand_and_option():
    import argparse

    hook = _hook("cli_reference")
    parser = build_parser()
    page = hook.render(parser)
    for name, (sub, _) in hook.subcommands(parser).items():
        assert f"## `loralab {name}`" in page
        section = page.split(f"## `loralab {name}`")[1].split("\n## ")[0]
        for action in sub._actions:
            if action.help is argparse.SUPPRESS or not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            assert f"`{action.option_strings[0]}`" in section, (name, action.option_strings)
    assert "| `--lora-r` `N` | `8` |" in page  # an option, its value and its default, as --help has them


@pytest.mark.slow
def test_the_site_builds_strictly_and_its_api_page_lists_the_public_functions(tmp_path):
    """`mkdocs build --strict` (as .ci/run runs it), then the API page holds every public function of
    `loralab.api` with the first line of its docstring."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    import html
    import inspect

    from loralab import api

    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    page = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    names = getattr(api, "__all__", None) or [n for n, f in inspect.getmembers(api, inspect.isfunction)
                                              if f.__module__ == api.__name__ and not n.startswith("_")]
    assert names
    for name in names:
        assert f'id="loralab.api.{name}"' in page, f"{name} is not on the API page"
        doc = inspect.getdoc(getattr(api, name))
        assert doc, f"loralab.api.{name} has no docstring"
        # Compared without spaces or backticks: code spans become tags, which the text above replaced by spaces.
        first = "".join(doc.split("\n\n")[0].split()).replace("`", "")
        assert first in "".join(text.split()), f"{name}'s docstring is not on the API page"
    results = tmp_path / "site" / "results"
    assert {p.name for p in results.iterdir() if p.is_dir()} == {
        p.parent.name for p in (ROOT / "experiments" / "results").glob("*/summary.md")}
