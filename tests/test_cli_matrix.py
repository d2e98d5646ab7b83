"""Every subcommand against every class of bad input: exit 2, one line on stderr, no traceback, and
every file that existed before is byte-identical after.

Runs in-process (`loralab.cli.main`), so a traceback would surface here as an uncaught exception.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import SCIENCE
from loralab.cli import main
from loralab.strategies import Strategy, StrategyConfig


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, minilm_tokenizer, science_exam):
    """A folder with a trained tiny run, good and bad data files, an experiment file and old outputs."""
    from run_fixtures import save_tiny_bert, short_run

    root = tmp_path_factory.mktemp("matrix")
    model = save_tiny_bert(root / "tiny", minilm_tokenizer)
    short_run(root / "run", model, StrategyConfig(Strategy.LORA))
    good = "id,prompt,A,B,answer\nq1,Why?,because,no,A\nq2,How?,so,thus,B\n"
    files = {
        "good.csv": good,
        "dup.csv": "id,prompt,A,B,answer,answer\nq1,Why?,a,b,A,B\n",
        "missing.csv": "id,prompt,A,B\nq1,Why?,a,b\n",
        "ragged.csv": "id,prompt,A,B,answer\nq1,Why?,a\n",
        "empty.csv": "",
        "exp.yaml": "base: {train: good.csv, valid: good.csv, model: tiny, device: cpu}\nruns: [{strategy: lora}]\n",
        "exp-inf.yaml": "base: {train: good.csv, lora_alpha: .inf}\n",
        "exp-targets.yaml": "base: {train: good.csv}\nruns: [{lora_targets: 5}]\n",
        "exp-dup.yaml": "base: {train: dup.csv, model: tiny}\n",
        "old-submission.csv": "id,prediction\nq1,A B\n",
        "afile": "not a folder\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x81")
    (root / "sweep" / "done").mkdir(parents=True)
    (root / "sweep" / "done" / "note.txt").write_text("keep me\n")
    (root / "full-folder").mkdir()
    (root / "full-folder" / "keep.txt").write_text("keep me\n")
    return root


TRAIN = ["train", "--train", "good.csv", "--model", "tiny", "--quiet", "--device", "cpu", "--max-steps", "1"]
SCORE = ["--run", "run", "--data", "good.csv", "--quiet", "--device", "cpu"]

# (subcommand, class of bad input, arguments, a piece of the one-line message)
CASES = [
    ("train", "bad data: duplicate columns", [*TRAIN, "--train", "dup.csv", "--out", "new"], "'answer' twice"),
    ("train", "bad data: not UTF-8", [*TRAIN, "--train", "binary.csv", "--out", "new"], "not UTF-8"),
    ("train", "bad data: missing column", [*TRAIN, "--valid", "missing.csv", "--out", "new"], "missing column"),
    ("train", "bad data: empty file", [*TRAIN, "--train", "empty.csv", "--out", "new"], "empty"),
    ("train", "bad number: inf", [*TRAIN, "--epochs", "inf", "--out", "new"], "invalid --epochs inf"),
    ("train", "bad number: inf alpha", [*TRAIN, "--lora-alpha", "inf", "--out", "new"], "invalid --lora-alpha inf"),
    ("train", "bad number: not a number", [*TRAIN, "--batch-size", "x", "--out", "new"], "invalid int value"),
    ("train", "bad number: zero", [*TRAIN, "--batch-size", "0", "--out", "new"], "invalid --batch-size 0"),
    ("train", "bad output: a file", [*TRAIN, "--out", "afile"], "exists and is not a folder"),
    ("train", "bad output: a finished run", [*TRAIN, "--out", "run"], "already holds run.json"),
    ("train", "bad model", [*TRAIN, "--model", "/nonexistent/model", "--out", "new"], "no such folder"),
    ("evaluate", "bad data: duplicate columns", ["evaluate", *SCORE, "--data", "dup.csv"], "'answer' twice"),
    ("evaluate", "bad data: ragged row", ["evaluate", *SCORE, "--data", "ragged.csv"], "row 2: has 3 fields"),
    ("evaluate", "bad number: zero", ["evaluate", *SCORE, "--batch-size", "0"], "invalid --batch-size 0"),
    ("evaluate", "bad run", ["evaluate", "--run", "nowhere", "--data", "good.csv"], "no such run folder"),
    ("predict", "bad data: not UTF-8", ["predict", *SCORE, "--data", "binary.csv", "--out", "s.csv"], "not UTF-8"),
    ("predict", "bad number: negative", ["predict", *SCORE, "--batch-size", "-1", "--out", "s.csv"],
     "invalid --batch-size -1"),
    ("predict", "bad output: a folder", ["predict", *SCORE, "--out", "full-folder"], "is a folder"),
    ("predict", "bad output: scores a folder", ["predict", *SCORE, "--out", "s.csv", "--scores", "full-folder"],
     "is a folder"),
    ("predict", "bad output: the input", ["predict", *SCORE, "--out", "good.csv"], "is also an input"),
    ("predict", "bad run", ["predict", "--run", "afile", "--data", "good.csv", "--out", "s.csv"], "no such run folder"),
    ("sweep", "bad data: duplicate columns", ["sweep", "exp-dup.yaml", "--out", "sw", "--quiet"], "'answer' twice"),
    ("sweep", "bad number: inf in the file", ["sweep", "exp-inf.yaml", "--out", "sw"], "strategy.lora.alpha=inf"),
    ("sweep", "bad setting type", ["sweep", "exp-targets.yaml", "--out", "sw"], "for strategy.lora.targets"),
    ("sweep", "bad number: threads", ["sweep", "exp.yaml", "--out", "sw", "--threads", "0"], "invalid --threads 0"),
    ("sweep", "bad output: a file", ["sweep", "exp.yaml", "--out", "afile"], "exists and is not a folder"),
    ("sweep", "bad experiment file", ["sweep", "good.csv", "--out", "sw"], "expected a mapping"),
    ("intrinsic-dim", "bad data: duplicate columns",
     ["intrinsic-dim", "--train", "dup.csv", "--valid", "good.csv", "--model", "tiny", "--out", "id"], "'answer' twice"),
    ("intrinsic-dim", "bad number: inf", ["intrinsic-dim", "--train", "good.csv", "--valid", "good.csv",
                                          "--theta-lr", "inf", "--out", "id"], "invalid --theta-lr inf"),
    ("intrinsic-dim", "bad output: a file",
     ["intrinsic-dim", "--train", "good.csv", "--valid", "good.csv", "--out", "afile"], "exists and is not a folder"),
    ("report", "bad folder: no records", ["report", "full-folder"], "no finished run records"),
    ("report", "bad output: a file", ["report", "sweep", "--out", "afile"], "exists and is not a folder"),
    ("report", "bad choice", ["report", "sweep", "--metric", "f1x"], "invalid choice"),
    ("merge", "bad output: a non-empty folder", ["merge", "--run", "run", "--out", "full-folder"], "not empty"),
    ("merge", "bad run", ["merge", "--run", "good.csv", "--out", "m"], "no such run folder"),
    ("export-peft", "bad output: a file", ["export-peft", "--run", "run", "--out", "afile"], "exists and is not a folder"),
    ("export-peft", "bad run", ["export-peft", "--run", "nowhere", "--out", "p"], "no such run folder"),
]


MADE = ("new", "sw", "id", "m", "p", "s.csv")


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command,kind,args,message", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_exits_2_with_one_line_and_touches_nothing(workspace, monkeypatch, capsys, command, kind, args,
                                                             message):
    monkeypatch.chdir(workspace)
    for made in MADE:  # a failed case must not leave its outputs to the next one
        shutil.rmtree(workspace / made, ignore_errors=True)
        (workspace / made).unlink(missing_ok=True) if (workspace / made).is_file() else None
    before = snapshot(workspace)
    try:
        status = main(args)
    except SystemExit as e:  # argparse's own errors
        status = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("loralab"), err
    assert message in lines[0]
    assert "Traceback" not in err
    assert snapshot(workspace) == before
    for made in MADE:  # nothing half-made is left behind
        assert not (workspace / made).exists(), made
