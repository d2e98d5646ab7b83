"""`loralab recommend` from the command line: bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

import pytest

from test_cli_matrix import check_refused, workspace  # noqa: F401  (a fixture, used by name)

GOOD = ["recommend", "--train", "good.csv", "--valid", "good.csv", "--models", "tiny", "--budget", "1m",
        "--out", "new", "--quiet", "--device", "cpu"]


def _with(**changes: str) -> list[str]:
    args = list(GOOD)
    for option, value in changes.items():
        args[args.index(f"--{option}") + 1] = value
    return args


CASES = [
    ("bad budget", _with(budget="30 minutes"), ("--budget", "30 minutes")),
    ("zero budget", _with(budget="0s"), "--budget"),
    ("bad memory", GOOD + ["--memory", "8 parsecs"], ("--memory", "8 parsecs")),
    ("unknown strategy", GOOD + ["--strategies", "full,lorax"], ("--strategies", "lorax")),
    ("no strategy", GOOD + ["--strategies", ","], "--strategies"),
    ("eta below 2", GOOD + ["--eta", "1"], "eta"),
    ("missing model", _with(models="./nowhere"), "nowhere"),
    ("bad training file", _with(train="missing.csv"), "missing.csv"),
    ("missing training file", _with(train="absent.csv"), "absent.csv"),
    ("bad validation file", _with(valid="ragged.csv"), "ragged.csv"),
    ("output is a file", _with(out="afile"), "exists and is not a folder"),
    ("bad worker name", GOOD + ["--worker", "a/b"], "--worker"),
    ("bad clock", GOOD + ["--budget-clock", "sundial"], "--budget-clock"),
]


@pytest.mark.parametrize("kind,args,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_touches_nothing(workspace, monkeypatch, capsys, kind, args, message):  # noqa: F811
    check_refused(workspace, monkeypatch, capsys, args, message)


@pytest.mark.slow
def test_a_search_from_the_command_line_writes_its_report_and_the_winner(tmp_path, minilm_tokenizer, capsys):
    from recommend_fixtures import easy_questions
    from run_fixtures import save_tiny_bert

    from loralab.cli import main

    model = save_tiny_bert(tmp_path / "tiny", minilm_tokenizer)
    train, valid = easy_questions(tmp_path / "train.csv", 64, 0), easy_questions(tmp_path / "valid.csv", 32, 1)
    args = ["recommend", "--train", train, "--valid", valid, "--models", model, "--strategies", "full,lora",
            "--budget", "10m", "--memory", "64GB", "--batch-size", "4", "--max-length", "16", "--min-steps", "2",
            "--rungs", "2", "--eta", "2", "--bracket-size", "2", "--brackets", "1", "--pilot-valid", "32",
            "--out", tmp_path / "search", "--quiet", "--device", "cpu", "--threads", "1"]
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'search' / 'report.md'}" in out and "winner: tiny-" in out
    report = (tmp_path / "search" / "report.md").read_text()
    assert "**Recommended: `tiny-" in report and "| `tiny-full` | " in report and "| `tiny-lora` | " in report
    assert len(list((tmp_path / "search" / "final").glob("t*/run.json"))) == 1
