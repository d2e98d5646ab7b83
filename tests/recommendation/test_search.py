"""The recommend search on a tiny model: pruning, resuming after a kill, the winner's run and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from recommend_fixtures import BAD_LR, GOOD_LR, easy_search
from processes import kill_when
from run_fixtures import save_tiny_bert
from loralab.cli import main
from loralab.recommendation import parse_budget, recommend
from loralab.recommendation.report import write_report
from loralab.recommendation.search import open_search
from loralab.runs.artifacts import RECORD

optuna.logging.set_verbosity(optuna.logging.WARNING)
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_tokenizer) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("model") / "tiny", minilm_tokenizer)


def _pilots(out: Path) -> dict[str, list[int]]:
    """trial folder -> the step counts it has finished pilots for."""
    found = {}
    for record in sorted(out.glob(f"pilots/*/steps-*/{RECORD}")):
        if json.loads(record.read_text())["status"] == "completed":
            found.setdefault(record.parent.parent.name, []).append(int(record.parent.name.split("-")[1]))
    return found


@pytest.mark.slow
def test_each_method_halves_in_its_own_bracket_and_the_rate_that_learns_wins(tmp_path, tiny):
    config = easy_search(tmp_path, tiny)
    result = recommend(config, tmp_path / "search", log=lambda _: None)
    pilots = _pilots(tmp_path / "search")
    # full's space is one setting (one learning rate): a bracket of one; LoRA's a bracket of four, the
    # best half of which go on to 8 steps, judged among LoRA settings only. A setting is drawn once: the
    # sampler proposed one of LoRA's a second time as trial 4, which was dropped for one not yet drawn.
    assert sorted(pilots) == ["t000-tiny-full", "t001-tiny-lora", "t002-tiny-lora", "t003-tiny-lora",
                              "t005-tiny-lora"]
    lora = [p["settings"] for p in result["pilots"] if p["strategy"] == "lora"]
    assert len(lora) == 4 and len({repr(sorted(s.items())) for s in lora}) == 4
    assert pilots["t000-tiny-full"] == [4, 8]
    assert sorted(len(steps) for name, steps in pilots.items() if name.endswith("lora")) == [1, 1, 2, 2]
    states = sorted(p["state"] for p in result["pilots"] if p["strategy"] == "lora")
    assert states == ["complete", "complete", "pruned", "pruned"]
    assert result["winner"]["settings"]["lr"] == GOOD_LR
    assert result["final"]["status"] == "completed" and result["final"]["folder"] == "final/t000-tiny-full"
    assert result["final"]["steps"] == 16 >= result["final"]["pilot_steps"] == 8
    assert all(p["settings"]["lr"] == BAD_LR for p in result["pilots"] if p["strategy"] == "lora")

    # Every run is an ordinary run folder (merge, export-peft, predict, report read them), and the
    # report names what it compared.
    assert main(["merge", "--run", str(tmp_path / "search" / "final" / "t000-tiny-full"), "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    lora = tmp_path / "search" / "pilots" / "t001-tiny-lora" / "steps-4"
    assert main(["export-peft", "--run", str(lora), "--out", str(tmp_path / "adapter")]) == 0
    assert main(["predict", "--run", str(tmp_path / "search" / "final" / "t000-tiny-full"), "--data", config.base.valid,
                 "--out", str(tmp_path / "submission.csv"), "--quiet", "--device", "cpu"]) == 0
    assert len((tmp_path / "submission.csv").read_text().splitlines()) == 33
    report = (tmp_path / "search" / "report.md").read_text()
    assert "**Recommended: `tiny-full` with lr 1.0e-03**" in report
    assert "| 1 | `tiny-lora` | lr 1.0e-09, targets " in report and "pruned at 4 steps" in report
    assert "(16 steps; its longest pilot trained 8)" in report
    assert (tmp_path / "search" / "curves.png").stat().st_size > 0
    # The report is built from recommendation.json and the run records alone: rebuilt, it is the same.
    (tmp_path / "search" / "report.md").unlink()
    write_report(tmp_path / "search")
    assert (tmp_path / "search" / "report.md").read_text() == report
    # `loralab report` on the search's folder writes its own report again, not the per-run one over it.
    assert main(["report", str(tmp_path / "search")]) == 0
    assert (tmp_path / "search" / "report.md").read_text() == report


_KILLED = """
import sys
sys.path[:0] = [{tests!r}, {here!r}]
from pathlib import Path
from recommend_fixtures import easy_search
from loralab.recommendation import recommend
recommend(easy_search(Path({folder!r}), Path({model!r})), Path({folder!r}) / "search", log=lambda _: None)
"""


@pytest.mark.slow
def test_a_killed_search_resumes_without_redoing_finished_pilots(tmp_path, tiny):
    out = tmp_path / "search"
    easy_search(tmp_path, tiny)  # writes the data files before the child reads them
    script = _KILLED.format(tests=str(HERE.parent), here=str(HERE), folder=str(tmp_path), model=str(tiny))
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = out / "ledger-main.jsonl"  # full's two pilots, then one in LoRA's bracket
    kill_when(child, lambda: ledger.exists() and ledger.read_text().count('"kind": "pilot"') >= 3,
              what="a third pilot")

    finished = {}
    for name, steps in _pilots(out).items():
        for s in steps:
            path = out / "pilots" / name / f"steps-{s}" / RECORD
            finished[path] = path.read_bytes()
    assert len(finished) >= 2
    result = recommend(easy_search(tmp_path, tiny), out, log=lambda _: None)

    for path, content in finished.items():  # read back, not trained again
        assert path.read_bytes() == content, path
    assert sorted(_pilots(out)) == ["t000-tiny-full", "t001-tiny-lora", "t002-tiny-lora", "t003-tiny-lora",
                                    "t005-tiny-lora"]  # trial 4 repeated a setting: dropped (`search._draw`)
    assert sorted(p["state"] for p in result["pilots"]) == ["complete", "complete", "complete", "pruned", "pruned"]
    ledger = [json.loads(line) for line in (out / "ledger-main.jsonl").read_text().splitlines()]
    pilots_run = [e["folder"] for e in ledger if e["kind"] == "pilot"]
    assert len(pilots_run) == 8, pilots_run  # 5 pilots of 4 steps, 3 of 8: none twice

    # Resuming a finished search spends nothing more.
    again = recommend(easy_search(tmp_path, tiny), out, log=lambda _: None)
    assert again["pilots"] == result["pilots"] and again["final"] == result["final"]


def test_a_budget_too_small_for_a_pilot_and_the_final_run_starts_none(tmp_path, tiny):
    search = open_search(easy_search(tmp_path, tiny, budget_seconds=1.0, brackets=None), tmp_path / "search",
                         log=lambda _: None)
    assert search.final_steps() == 16  # 64 questions in batches of 4
    search.close()
    result = recommend(easy_search(tmp_path, tiny, budget_seconds=1.0, brackets=None), tmp_path / "search",
                       log=lambda _: None)
    assert result["stopped"].startswith("budget")
    assert all(not p["values"] for p in result["pilots"]) and not list((tmp_path / "search").glob("pilots/*"))
    assert result["final"] is None
    assert "No pilot finished" in (tmp_path / "search" / "report.md").read_text()


@pytest.mark.slow
def test_a_second_process_cannot_run_as_the_same_worker(tmp_path, tiny):
    first = open_search(easy_search(tmp_path, tiny), tmp_path / "search")
    second = subprocess.run([sys.executable, "-c", _SAME_WORKER.format(tests=str(HERE.parent), here=str(HERE),
                                                                      folder=str(tmp_path), model=str(tiny))],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert second.returncode == 1
    assert "another process is running this search as worker 'main'" in second.stderr
    assert first.lock is not None
    assert open_search(easy_search(tmp_path, tiny, worker="second"), tmp_path / "search").lock is not None


_SAME_WORKER = """
import sys
sys.path[:0] = [{tests!r}, {here!r}]
from pathlib import Path
from recommend_fixtures import easy_search
from loralab.errors import LoralabError
from loralab.recommendation.report import write_report
from loralab.recommendation.search import open_search
try:
    open_search(easy_search(Path({folder!r}), Path({model!r})), Path({folder!r}) / "search")
except LoralabError as e:
    sys.exit(str(e))
"""


def test_a_folder_holding_another_search_is_refused(tmp_path, tiny):
    recommend(easy_search(tmp_path, tiny, budget_seconds=1.0, brackets=None), tmp_path / "search", log=lambda _: None)
    with pytest.raises(Exception, match="other settings"):
        open_search(easy_search(tmp_path, tiny, min_steps=5), tmp_path / "search")


@pytest.mark.parametrize("text,seconds", [("30m", 1800), ("1h30m", 5400), ("1590s", 1590), ("90", 90), ("1.5h", 5400)])
def test_budgets_read_as_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "30 minutes", "-5m", "0", "m"])
def test_a_bad_budget_is_refused(text):
    with pytest.raises(Exception, match="--budget"):
        parse_budget(text)
