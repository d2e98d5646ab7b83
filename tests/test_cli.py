"""The CLI end to end, the way a user drives it: train, evaluate, predict, and bad input."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
from safetensors import safe_open

from conftest import SCIENCE


def loralab(*args, cwd=None):
    exe = shutil.which("loralab") or sys.executable
    prefix = [exe] if exe.endswith("loralab") else [exe, "-m", "loralab.cli"]
    return subprocess.run(prefix + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=600)


def slice_csv(source, target, rows):
    with open(source, newline="") as f:
        lines = list(csv.reader(f))
    with open(target, "w", newline="") as f:
        csv.writer(f).writerows(lines[: rows + 1])
    return target


@pytest.fixture(scope="module")
def trained(tmp_path_factory, science_exam):
    tmp = tmp_path_factory.mktemp("cli")
    train = slice_csv(science_exam / "train.csv", tmp / "train.csv", 24)
    valid = slice_csv(science_exam / "valid.csv", tmp / "valid.csv", 12)
    out = tmp / "run"
    result = loralab("train", "--train", train, "--valid", valid, "--strategy", "lora", "--lora-r", 4,
                     "--lr", "1e-3", "--batch-size", 4, "--max-length", 64, "--seed", 3, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    return tmp, out, result.stdout


@pytest.mark.slow  # the one end-to-end test: trains MiniLM through the installed command
def test_train_writes_record_weights_and_summary(trained):
    _, out, stdout = trained
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "completed" and record["strategy"] == "lora"
    assert record["hyperparameters"]["strategy.lora.r"] == 4 and record["hyperparameters"]["training.seed"] == 3
    assert record["steps"] == 6 and len(record["loss"]) == 6  # 24 questions / batch 4, one epoch
    assert all(loss > 0 for loss in record["loss"])
    for key in ("train_seconds", "peak_memory_mb", "tokens_per_second"):
        assert record[key] > 0
    assert 0 < record["trainable_params"] < record["total_params"]
    assert 0 <= record["valid"]["accuracy"] <= record["valid"]["map@3"] <= 1 and record["valid"]["questions"] == 12
    with safe_open(str(out / "weights.safetensors"), "pt") as f:
        keys = set(f.keys())
        saved = sum(f.get_tensor(k).numel() for k in keys)
    untrained = record["head_start"]["untrained"]  # all-MiniLM-L6-v2's pooler ships untrained: it trains with the head
    assert untrained == ["bert.pooler"], untrained
    assert keys and all("lora_" in k or k.startswith(("classifier.", "bert.pooler.")) for k in keys)
    assert saved == record["trainable_params"]  # only the trainable state is saved for partial strategies
    assert f"MAP@3 {record['valid']['map@3']:.4f}" in stdout


@pytest.mark.slow  # the one end-to-end test: trains MiniLM through the installed command
def test_evaluate_reproduces_the_recorded_metrics(trained):
    tmp, out, _ = trained
    record = json.loads((out / "run.json").read_text())
    result = loralab("evaluate", "--run", out, "--data", tmp / "valid.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"MAP@3     {record['valid']['map@3']:.4f}" in result.stdout


@pytest.mark.slow  # the one end-to-end test: trains MiniLM through the installed command
def test_predict_writes_a_kaggle_submission_and_scores(trained):
    tmp, out, _ = trained
    sub, scores = tmp / "submission.csv", tmp / "scores.csv"
    result = loralab("predict", "--run", out, "--data", tmp / "valid.csv", "--out", sub, "--scores", scores, "--quiet")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(sub)))
    assert [r["id"] for r in rows] == [str(i) for i in range(12)]
    for row in rows:
        letters = row["prediction"].split(" ")
        assert len(letters) == 3 and len(set(letters)) == 3 and set(letters) <= set("ABCDE")
    score_rows = list(csv.DictReader(open(scores)))
    for row, score_row in zip(rows, score_rows):
        best = max("ABCDE", key=lambda letter: float(score_row[letter]))
        assert row["prediction"].startswith(best)


BAD_INPUT = {
    "missing column": ("id,prompt,A,B,C\n1,Q,a,b,c\n", "missing column(s) answer"),
    "bad answer letter": ("id,prompt,A,B,answer\n1,Q,a,b,F\n", "row 2, field 'answer'"),
    "empty prompt": ("id,prompt,A,B,answer\n1,,a,b,A\n", "row 2, field 'prompt'"),
}


@pytest.mark.slow  # each case starts the command in a fresh process, which loads torch
@pytest.mark.parametrize("text,message", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_training_file_exits_2_with_a_clear_message(tmp_path, text, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    result = loralab("train", "--train", bad, "--out", tmp_path / "run", "--quiet")
    assert result.returncode == 2
    assert f"{bad}" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_unreadable_file_and_missing_run_exit_2(tmp_path):
    result = loralab("train", "--train", tmp_path / "absent.csv", "--out", tmp_path / "run", "--quiet")
    assert result.returncode == 2 and "absent.csv: file not found" in result.stderr and "Traceback" not in result.stderr
    result = loralab("evaluate", "--run", tmp_path / "norun", "--data", SCIENCE / "valid.csv")
    assert result.returncode == 2 and "no such run folder" in result.stderr


@pytest.mark.slow  # a fresh process that loads torch and MiniLM
def test_a_max_length_past_the_model_s_positions_is_refused_in_one_line(tmp_path):
    """MiniLM has 512 learned positions: a longer sequence indexed past the table (IndexError, traceback)."""
    long = tmp_path / "long.csv"
    long.write_text("id,prompt,A,B,answer\n" + "".join(f"{i},{' '.join(['word'] * 700)},yes,no,A\n" for i in range(2)))
    result = loralab("train", "--train", long, "--max-length", 1024, "--max-steps", 1, "--out", tmp_path / "run",
                     "--quiet", "--threads", 1)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "invalid --max-length 1024: expected at most 512: minilm has 512 positions" in result.stderr
    assert not (tmp_path / "run").exists()


def test_bad_data_does_not_touch_an_existing_run(trained, tmp_path):
    _, out, _ = trained
    before = (out / "run.json").read_bytes(), (out / "weights.safetensors").read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prompt,A\n")
    result = loralab("train", "--train", bad, "--out", out, "--quiet")
    assert result.returncode == 2
    assert ((out / "run.json").read_bytes(), (out / "weights.safetensors").read_bytes()) == before


def test_every_option_that_takes_a_value_shows_its_default():
    """`--help` names each option's default (settings' from the settings table), so none is a guess."""
    import argparse

    from loralab.cli import build_parser

    for name, sub in build_parser()._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if not action.option_strings or action.help is argparse.SUPPRESS or action.nargs == 0 or action.required:
                continue
            assert "default" in (action.help or ""), f"loralab {name} {action.option_strings[0]}: no default in its help"
