"""Every subcommand against every class of bad input: exit 2, one line on stderr, no traceback, and
every file that existed before is byte-identical after.

Runs in-process (`loralab.cli.main`), so a traceback would surface here as an uncaught exception.
The first matrix uses multiple-choice files and a multiple-choice run; the second classification
and regression files (GLUE's layouts) and three tiny runs trained once: an RTE-like pair
classification with string labels, an STS-B-like regression and a headerless CoLA-like file read
through --columns.
"""

from __future__ import annotations

import hashlib
import json
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
        "big.jsonl": '{"prompt": "x", "completion": "y", "n": ' + "9" * 5000 + "}\n",
        "deep.json": "[" * 200_000 + "]" * 200_000,
        "surrogate.json": '[{"id": "q1", "prompt": "Why \\ud800?", "A": "a", "B": "b", "answer": "A"}]',
        "book.xlsx": "PK not a workbook",
        "exp-twice.yaml": "base: {train: good.csv, lora_r: 4, lora_r: 8}\nruns: [{strategy: lora}]\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x81")
    record = json.loads((root / "run" / "run.json").read_text())
    for name, change in BAD_RECORDS.items():  # the trained run, its record edited by hand
        shutil.copytree(root / "run", root / name)
        (root / name / "run.json").write_text(json.dumps({**record, **change}))
    (root / "sweep" / "done").mkdir(parents=True)
    (root / "sweep" / "done" / "note.txt").write_text("keep me\n")
    (root / "full-folder").mkdir()
    (root / "full-folder" / "keep.txt").write_text("keep me\n")
    return root


BAD_RECORDS = {"rec-base": {"base_model": "minilm"}, "rec-config": {"config": "oops"}, "rec-weights": {"weights": 5},
               "rec-task": {"task": ["multiple-choice"]}, "rec-future": {"loralab_version": "99.0.0"}}
TRAIN = ["train", "--train", "good.csv", "--model", "tiny", "--quiet", "--device", "cpu", "--max-steps", "1"]
SCORE = ["--run", "run", "--data", "good.csv", "--quiet", "--device", "cpu"]

# (subcommand, class of bad input, arguments, a piece of the one-line message)
CASES = [
    ("train", "bad data: duplicate columns", [*TRAIN, "--train", "dup.csv", "--out", "new"], "'answer' twice"),
    ("train", "bad data: not UTF-8", [*TRAIN, "--train", "binary.csv", "--out", "new"], "not UTF-8"),
    ("train", "bad data: missing column", [*TRAIN, "--valid", "missing.csv", "--out", "new"], "missing column"),
    ("train", "bad data: empty file", [*TRAIN, "--train", "empty.csv", "--out", "new"], "empty"),
    ("train", "parser limit: digits", [*TRAIN, "--train", "big.jsonl", "--out", "new"], "not readable JSON (Exceeds"),
    ("train", "parser limit: nesting", [*TRAIN, "--train", "deep.json", "--out", "new"], "nested too deeply"),
    ("train", "text the tokenizer refuses", [*TRAIN, "--valid", "surrogate.json", "--out", "new"], "lone surrogate"),
    ("train", "unsupported format", [*TRAIN, "--train", "book.xlsx", "--out", "new"], "unsupported format .xlsx"),
    ("train", "a name too long", [*TRAIN, "--out", "n" * 300], "300 bytes long"),
    ("sweep", "a key given twice", ["sweep", "exp-twice.yaml", "--out", "sw"], "key 'lora_r' is given twice"),
    ("train", "bad number: inf", [*TRAIN, "--epochs", "inf", "--out", "new"], "invalid --epochs inf"),
    ("train", "bad number: inf alpha", [*TRAIN, "--lora-alpha", "inf", "--out", "new"], "invalid --lora-alpha inf"),
    ("train", "bad number: not a number", [*TRAIN, "--batch-size", "x", "--out", "new"], "invalid int value"),
    ("train", "bad number: zero", [*TRAIN, "--batch-size", "0", "--out", "new"], "invalid --batch-size 0"),
    ("train", "bad output: a file", [*TRAIN, "--out", "afile"], "exists and is not a folder"),
    ("train", "bad output: a finished run", [*TRAIN, "--out", "run"], "already holds a finished run"),
    ("train", "bad model", [*TRAIN, "--model", "/nonexistent/model", "--out", "new"], "no such folder"),
    ("evaluate", "bad data: duplicate columns", ["evaluate", *SCORE, "--data", "dup.csv"], "'answer' twice"),
    ("evaluate", "bad data: ragged row", ["evaluate", *SCORE, "--data", "ragged.csv"], "row 2: has 3 fields"),
    ("evaluate", "bad number: zero", ["evaluate", *SCORE, "--batch-size", "0"], "invalid --batch-size 0"),
    ("evaluate", "bad run", ["evaluate", "--run", "nowhere", "--data", "good.csv"], "no such run folder"),
    *[("evaluate", f"bad record: {name}", ["evaluate", *SCORE, "--run", name], message)
      for name, message in (("rec-base", "field 'base_model' is str"), ("rec-config", "field 'config' is str"),
                            ("rec-weights", "field 'weights' is int"), ("rec-task", "field 'task' is list"),
                            ("rec-future", "written by loralab 99.0.0"))],
    ("evaluate", "an encoder alone", ["evaluate", "--model", "tiny", "--data", "good.csv"], "randomly initialised"),
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


def check_refused(workspace: Path, monkeypatch, capsys, args: list[str], message: str | tuple[str, ...]) -> None:
    """`main(args)` in `workspace` exits 2 with one line holding every piece of `message`, and touches nothing."""
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
    for piece in (message,) if isinstance(message, str) else message:
        assert piece in lines[0], (piece, lines[0])
    assert "Traceback" not in err
    after = snapshot(workspace)
    assert after == before, {"added": sorted(after.keys() - before.keys()), "removed": sorted(before.keys() - after.keys()),
                             "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k])}
    for made in MADE:  # nothing half-made is left behind
        assert not (workspace / made).exists(), made


@pytest.mark.parametrize("command,kind,args,message", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_exits_2_with_one_line_and_touches_nothing(workspace, monkeypatch, capsys, command, kind, args,
                                                             message):
    check_refused(workspace, monkeypatch, capsys, args, message)


# ---------------------------------------------------------------------------------------------
# Classification and regression

COLA = "source,label,notes,sentence"
CLASS_FILES = {
    # good files, GLUE's layouts (TSV read with quoting off)
    "rte.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA man sleeps.\tA person sleeps.\tentailment\n"
               "1\tA dog barks.\tA cat sleeps.\tnot_entailment\n2\tIt rains.\tIt is wet.\tentailment\n"
               "3\tIt is \"dry\".\tIt rains.\tnot_entailment\n",
    "sts.tsv": "index\tsentence1\tsentence2\tscore\n0\tA plane.\tAn air plane.\t5.000\n1\tA man.\tA dog.\t0.400\n"
               "2\tA cat.\tA cat sits.\t3.800\n3\tRain.\tSun.\t0.000\n",
    "cola.tsv": "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tThe car honked down the road.\n"
                "gj04\t1\t\tThey drank the pub dry.\ngj04\t0\t*\tThey drank the pub.\n",
    "mc.csv": "id,prompt,A,B,answer\nq1,Why?,because,no,A\nq2,How?,so,thus,B\n",
    # bad files: each names its problem; the row is the file's line
    "dup.tsv": "index\tsentence1\tsentence1\tlabel\n0\ta\tb\tentailment\n",
    "notext.tsv": "index\tpremise\tlabel\n0\tA man.\tentailment\n",  # premise without hypothesis
    "nolabel.tsv": "index\tsentence1\tsentence2\tgold\n0\tA man.\tA person.\tentailment\n",
    "emptytext.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA man.\tA person.\tentailment\n"
                     "1\tA dog.\t  \tnot_entailment\n",
    "unseen.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA man.\tA person.\tentailment\n"
                  "1\tA dog.\tA cat.\tneutral\n",
    "regbad.tsv": "index\tsentence1\tsentence2\tscore\n0\tA plane.\tAn air plane.\t5.000\n"
                  "1\tA man.\tA dog.\thigh\n",
    "cola-short.tsv": "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\n",
    "single.tsv": "sentence\tlabel\nit is good\t1\nit is fine\t1\n",
}


def _experiment(train: str, valid: str, **settings) -> str:
    extra = "".join(f", {k}: {v}" for k, v in settings.items())
    return (f"base: {{train: {train}, valid: {valid}, model: tiny, device: cpu, max_steps: 1, batch_size: 4, "
            f"max_length: 16{extra}}}\nruns: [{{strategy: lora}}]\n")


CLASS_EXPERIMENTS = {
    "x-dup.yaml": _experiment("dup.tsv", "rte.tsv"),
    "x-notext.yaml": _experiment("rte.tsv", "notext.tsv"),
    "x-nolabel.yaml": _experiment("nolabel.tsv", "rte.tsv"),
    "x-emptytext.yaml": _experiment("rte.tsv", "emptytext.tsv"),
    "x-unseen.yaml": _experiment("rte.tsv", "unseen.tsv"),
    "x-regbad.yaml": _experiment("sts.tsv", "regbad.tsv"),
    "x-regbad-train.yaml": _experiment("regbad.tsv", "sts.tsv", task="regression"),
    "x-ragged.yaml": _experiment("cola.tsv", "cola-short.tsv", columns=f"[{COLA}]"),
    "x-single.yaml": _experiment("single.tsv", "single.tsv"),
    "x-mc.yaml": _experiment("mc.csv", "mc.csv", task="classification"),
    "x-binary.yaml": _experiment("binary.tsv", "rte.tsv"),
    "x-columns-empty.yaml": _experiment("cola.tsv", "cola.tsv", columns="''"),
    "x-columns-blank.yaml": _experiment("cola.tsv", "cola.tsv", columns="['']"),
}
TINY_TRAIN = ["--model", "tiny", "--quiet", "--device", "cpu", "--max-steps", "1", "--batch-size", "4",
              "--max-length", "16"]


@pytest.fixture(scope="module")
def class_workspace(tmp_path_factory, minilm_tokenizer):
    """Good and bad classification/regression files, experiment files, and three tiny runs trained once
    through the CLI: `cls` (rte.tsv, string labels), `reg` (sts.tsv, inferred regression) and `cola`
    (the headerless cola.tsv with --columns)."""
    import json

    from run_fixtures import save_tiny_bert

    root = tmp_path_factory.mktemp("class-matrix")
    save_tiny_bert(root / "tiny", minilm_tokenizer)
    for name, text in {**CLASS_FILES, **CLASS_EXPERIMENTS}.items():
        (root / name).write_text(text)
    (root / "binary.tsv").write_bytes(b"sentence\tlabel\nit is good\t1\nit is \xff\xfe bad\t0\n")
    for run, data, extra in (("cls", "rte.tsv", []), ("reg", "sts.tsv", []), ("cola", "cola.tsv", ["--columns", COLA])):
        args = ["train", "--train", str(root / data), *extra, *TINY_TRAIN, "--model", str(root / "tiny"),
                "--strategy", "lora", "--out", str(root / run)]
        assert main(args) == 0
    tasks = {run: json.loads((root / run / "run.json").read_text())["task"] for run in ("cls", "reg", "cola")}
    assert tasks == {"cls": "classification", "reg": "regression", "cola": "classification"}
    return root


TRAIN_C = ["train", *TINY_TRAIN, "--out", "new"]
INTRINSIC = ["intrinsic-dim", "--model", "tiny", "--quiet", "--device", "cpu", "--max-steps", "1", "--batch-size", "4",
             "--max-length", "16", "--d-min", "10", "--d-max", "10", "--out", "id"]


def _score_args(command: str, run: str, data: str) -> list[str]:
    args = [command, "--run", run, "--data", data, "--quiet", "--device", "cpu"]
    return args + (["--out", "s.csv"] if command == "predict" else [])


def _known_bug(reason: str):
    """A case loralab gets wrong today (see the reason); strict, so a fix shows up as XPASS to remove it."""
    return pytest.mark.xfail(strict=True, reason=reason)


HALF_MADE = "exits 2 but leaves a half-made output behind: the check runs after the output is written"
EMPTY_COLUMNS = "empty names in --columns are dropped silently (none left: the first row is read as a header)"
NO_FILE = "the single-label message names no file"

# (subcommand, class of bad input, arguments, pieces of the one-line message[, marks])
CLASS_CASES = [
    ("train", "duplicate columns", [*TRAIN_C, "--train", "dup.tsv"], ("dup.tsv", "'sentence1' twice")),
    ("train", "no text column", [*TRAIN_C, "--train", "notext.tsv"], "notext.tsv: no text column"),
    ("train", "no label column", [*TRAIN_C, "--train", "nolabel.tsv"], "nolabel.tsv: no label column"),
    ("train", "no label column in valid", [*TRAIN_C, "--train", "rte.tsv", "--valid", "nolabel.tsv"],
     "nolabel.tsv: no label column"),
    ("train", "empty text", [*TRAIN_C, "--train", "emptytext.tsv"],
     "emptytext.tsv, row 3, field 'sentence2': empty text"),
    ("train", "label not in training file", [*TRAIN_C, "--train", "rte.tsv", "--valid", "unseen.tsv"],
     "unseen.tsv, row 3: label 'neutral' is not one the model was trained on"),
    ("train", "regression label not a number", [*TRAIN_C, "--train", "regbad.tsv", "--task", "regression"],
     "regbad.tsv, row 3: label 'high' is not a finite number"),
    ("train", "regression label not a number in valid", [*TRAIN_C, "--train", "sts.tsv", "--valid", "regbad.tsv"],
     "regbad.tsv, row 3: label 'high' is not a finite number"),
    ("train", "headerless row shorter than --columns", [*TRAIN_C, "--train", "cola-short.tsv", "--columns", COLA],
     "cola-short.tsv, row 2: has 2 fields, 4 columns are named"),
    ("train", "a single label", [*TRAIN_C, "--train", "single.tsv"], ("single.tsv", "needs at least two")),
    ("train", "--task classification on a multiple-choice file", [*TRAIN_C, "--train", "mc.csv", "--task",
                                                                   "classification"], "mc.csv: no text column"),
    ("train", "not UTF-8", [*TRAIN_C, "--train", "binary.tsv"], "binary.tsv, row 3: not UTF-8"),
    ("train", "empty --columns", [*TRAIN_C, "--train", "cola.tsv", "--columns", ""], "--columns"),
    ("train", "--columns of commas", [*TRAIN_C, "--train", "cola.tsv", "--columns", ","], "--columns"),
    ("train", "empty --columns with a header row", [*TRAIN_C, "--train", "rte.tsv", "--columns", ""], "--columns"),
    ("evaluate", "duplicate columns", _score_args("evaluate", "cls", "dup.tsv"), ("dup.tsv", "'sentence1' twice")),
    ("evaluate", "no text column", _score_args("evaluate", "cls", "notext.tsv"), "notext.tsv: no text column"),
    ("evaluate", "no label column", _score_args("evaluate", "cls", "nolabel.tsv"), "nolabel.tsv: no label column"),
    ("evaluate", "empty text", _score_args("evaluate", "cls", "emptytext.tsv"),
     "emptytext.tsv, row 3, field 'sentence2': empty text"),
    ("evaluate", "label not in training file", _score_args("evaluate", "cls", "unseen.tsv"),
     "unseen.tsv, row 3: label 'neutral' is not one the model was trained on (entailment, not_entailment)"),
    ("evaluate", "regression label not a number", _score_args("evaluate", "reg", "regbad.tsv"),
     "regbad.tsv, row 3: label 'high' is not a finite number"),
    ("evaluate", "headerless row shorter than the run's columns", _score_args("evaluate", "cola", "cola-short.tsv"),
     "cola-short.tsv, row 2: has 2 fields, 4 columns are named"),
    ("evaluate", "multiple-choice file on a classification run", _score_args("evaluate", "cls", "mc.csv"),
     "mc.csv: no text column"),
    ("evaluate", "not UTF-8", _score_args("evaluate", "cls", "binary.tsv"), "binary.tsv, row 3: not UTF-8"),
    ("predict", "duplicate columns", _score_args("predict", "cls", "dup.tsv"), ("dup.tsv", "'sentence1' twice")),
    ("predict", "no text column", _score_args("predict", "cls", "notext.tsv"), "notext.tsv: no text column"),
    ("predict", "empty text", _score_args("predict", "cls", "emptytext.tsv"),
     "emptytext.tsv, row 3, field 'sentence2': empty text"),
    ("predict", "headerless row shorter than the run's columns", _score_args("predict", "cola", "cola-short.tsv"),
     "cola-short.tsv, row 2: has 2 fields, 4 columns are named"),
    ("predict", "multiple-choice file on a classification run", _score_args("predict", "cls", "mc.csv"),
     "mc.csv: no text column"),
    ("predict", "not UTF-8", _score_args("predict", "reg", "binary.tsv"), "binary.tsv, row 3: not UTF-8"),
    ("sweep", "duplicate columns", ["sweep", "x-dup.yaml", "--out", "sw", "--quiet"], ("dup.tsv", "'sentence1' twice")),
    ("sweep", "no text column", ["sweep", "x-notext.yaml", "--out", "sw", "--quiet"], "notext.tsv: no text column"),
    ("sweep", "no label column", ["sweep", "x-nolabel.yaml", "--out", "sw", "--quiet"],
     "nolabel.tsv: no label column"),
    ("sweep", "empty text", ["sweep", "x-emptytext.yaml", "--out", "sw", "--quiet"],
     "emptytext.tsv, row 3, field 'sentence2': empty text"),
    ("sweep", "label not in training file", ["sweep", "x-unseen.yaml", "--out", "sw", "--quiet"],
     "unseen.tsv, row 3: label 'neutral' is not one the model was trained on"),
    ("sweep", "regression label not a number", ["sweep", "x-regbad.yaml", "--out", "sw", "--quiet"],
     "regbad.tsv, row 3: label 'high' is not a finite number"),
    ("sweep", "regression label not a number in train", ["sweep", "x-regbad-train.yaml", "--out", "sw", "--quiet"],
     "regbad.tsv, row 3: label 'high' is not a finite number"),
    ("sweep", "headerless row shorter than columns", ["sweep", "x-ragged.yaml", "--out", "sw", "--quiet"],
     "cola-short.tsv, row 2: has 2 fields, 4 columns are named"),
    ("sweep", "a single label", ["sweep", "x-single.yaml", "--out", "sw", "--quiet"],
     ("single.tsv", "needs at least two")),
    ("sweep", "task classification on a multiple-choice file", ["sweep", "x-mc.yaml", "--out", "sw", "--quiet"],
     "mc.csv: no text column"),
    ("sweep", "not UTF-8", ["sweep", "x-binary.yaml", "--out", "sw", "--quiet"], "binary.tsv, row 3: not UTF-8"),
    # the experiment names the setting that is wrong, not the file
    ("sweep", "columns: ''", ["sweep", "x-columns-empty.yaml", "--out", "sw", "--quiet"],
     "invalid task.columns=['']"),
    ("sweep", "columns: ['']", ["sweep", "x-columns-blank.yaml", "--out", "sw", "--quiet"],
     "invalid task.columns=['']"),
    ("intrinsic-dim", "duplicate columns", [*INTRINSIC, "--train", "dup.tsv", "--valid", "rte.tsv"],
     ("dup.tsv", "'sentence1' twice")),
    ("intrinsic-dim", "no text column", [*INTRINSIC, "--train", "rte.tsv", "--valid", "notext.tsv"],
     "notext.tsv: no text column"),
    ("intrinsic-dim", "no label column", [*INTRINSIC, "--train", "rte.tsv", "--valid", "nolabel.tsv"],
     "nolabel.tsv: no label column"),
    ("intrinsic-dim", "empty text", [*INTRINSIC, "--train", "emptytext.tsv", "--valid", "rte.tsv"],
     "emptytext.tsv, row 3, field 'sentence2': empty text"),
    ("intrinsic-dim", "label not in training file", [*INTRINSIC, "--train", "rte.tsv", "--valid", "unseen.tsv"],
     "unseen.tsv, row 3: label 'neutral' is not one the model was trained on"),
    ("intrinsic-dim", "regression label not a number", [*INTRINSIC, "--train", "sts.tsv", "--valid", "regbad.tsv",
                                                        "--metric", "pearson"],
     "regbad.tsv, row 3: label 'high' is not a finite number"),
    ("intrinsic-dim", "headerless row shorter than --columns", [*INTRINSIC, "--train", "cola.tsv", "--valid",
                                                                "cola-short.tsv", "--columns", COLA],
     "cola-short.tsv, row 2: has 2 fields, 4 columns are named"),
    ("intrinsic-dim", "a single label", [*INTRINSIC, "--train", "single.tsv", "--valid", "single.tsv"],
     ("single.tsv", "needs at least two")),
    ("intrinsic-dim", "--task classification on a multiple-choice file",
     [*INTRINSIC, "--train", "mc.csv", "--valid", "mc.csv", "--task", "classification"], "mc.csv: no text column"),
    ("intrinsic-dim", "not UTF-8", [*INTRINSIC, "--train", "binary.tsv", "--valid", "rte.tsv"],
     "binary.tsv, row 3: not UTF-8"),
    ("intrinsic-dim", "empty --columns", [*INTRINSIC, "--train", "cola.tsv", "--valid", "cola.tsv", "--columns", ""],
     "--columns"),
]


def _param(case: tuple) -> object:
    command, kind, args, message, *marks = case
    return pytest.param(args, message, id=f"{command}: {kind}", marks=marks)


@pytest.mark.parametrize("args,message", [_param(c) for c in CLASS_CASES])
def test_bad_classification_input_exits_2_with_one_line_and_touches_nothing(class_workspace, monkeypatch, capsys,
                                                                            args, message):
    check_refused(class_workspace, monkeypatch, capsys, args, message)


def test_every_subcommand_that_reads_data_meets_bad_classification_input():
    commands = {case[0] for case in CLASS_CASES}
    assert commands == {"train", "evaluate", "predict", "sweep", "intrinsic-dim"}


@pytest.mark.parametrize("args", [
    ["evaluate", "--run", "cls", "--data", "rte.tsv"],
    ["evaluate", "--run", "reg", "--data", "sts.tsv"],
    ["evaluate", "--run", "cola", "--data", "cola.tsv"],
    ["predict", "--run", "cls", "--data", "nolabel.tsv", "--out", "s.csv"],  # predict needs no labels
], ids=["evaluate cls", "evaluate reg", "evaluate cola", "predict without labels"])
def test_the_runs_score_good_files(class_workspace, monkeypatch, capsys, args):
    """The refusals above come from the files, not from the runs: the same runs take good files."""
    monkeypatch.chdir(class_workspace)
    (class_workspace / "s.csv").unlink(missing_ok=True)
    assert main([*args, "--quiet", "--device", "cpu"]) == 0, capsys.readouterr().err
    if "predict" in args:
        assert (class_workspace / "s.csv").read_text().splitlines()[0] == "id,prediction"
        (class_workspace / "s.csv").unlink()


def test_correlations_over_constant_labels_print_undefined(class_workspace, monkeypatch, capsys):
    monkeypatch.chdir(class_workspace)
    (class_workspace / "flat.tsv").write_text("index\tsentence1\tsentence2\tscore\n0\tA.\tB.\t2.5\n1\tC.\tD.\t2.5\n")
    assert main(_score_args("evaluate", "reg", "flat.tsv")) == 0
    out = capsys.readouterr().out
    assert "Pearson   undefined" in out and "Spearman  undefined" in out


def test_predict_to_a_250_character_name_writes_it(workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    name = "p" * 246 + ".csv"
    try:
        assert main(["predict", *SCORE, "--out", name]) == 0, capsys.readouterr().err
        assert (workspace / name).read_text().startswith("id,prediction")
        assert not [p for p in workspace.iterdir() if p.name.endswith(".tmp")]
    finally:
        (workspace / name).unlink(missing_ok=True)
