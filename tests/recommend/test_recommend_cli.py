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
    ("unknown strategy", GOOD + ["--strategies", "full,dora"], "unknown strategy 'dora'"),
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
