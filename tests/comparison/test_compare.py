"""`loralab compare` on a tiny model: the stages, the budget, compare.json and the report, the folder
lock, resuming after kill -9, and bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compare_fixtures import easy_comparison
from processes import kill_when
from run_fixtures import save_tiny_bert
from loralab.cli import main
from loralab.comparison import compare
from loralab.comparison.report import document
from loralab.machine import cpu_name
from loralab.errors import LoralabError
from loralab.runs.artifacts import RECORD
from loralab.runs.config import RunConfig
from loralab.sweeps.sweep import folder_lock

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_tokenizer) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("model") / "tiny", minilm_tokenizer)


def _ledger(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines() if line.strip()]


def _completed(out: Path) -> dict[Path, bytes]:
    found = {}
    for path in out.glob(f"*/*/**/{RECORD}"):
        content = path.read_bytes()
        if json.loads(content)["status"] == "completed":
            found[path] = content
    return found


def test_a_small_budget_runs_each_methods_first_pilot_then_its_final_runs_through_the_executor(tmp_path, tiny):
    out, seen = tmp_path / "cmp", []

    def executor(reasons, folder):  # as sweep's Ray executor is called: the planned runs in, their records out
        from loralab.runs import run

        for planned, _ in reasons:
            seen.append(planned.folder)
            yield planned, run(planned.config, folder / planned.folder, progress=False, log=lambda _: None)

    result = compare(easy_comparison(tmp_path, tiny, budget_seconds=1.0, seeds=1, metric="accuracy"), out,
                     log=lambda _: None, executor=executor)
    assert result["metric"] == "accuracy"  # --metric: not the task's first (map@3)
    assert json.loads((out / "plan.json").read_text())["metric"] == "accuracy"
    pilots = [e for e in _ledger(out) if e["kind"] == "pilot"]
    assert sorted(e["candidate"] for e in pilots) == ["full", "lora"]  # the first pilot of each, no more
    assert sorted(seen) == sorted(e["folder"] for e in _ledger(out) if e["kind"] in ("pilot", "final"))
    assert len(seen) == 4  # two first pilots, one final run each, all through the executor
    assert [len(m["pilots"]) for m in result["methods"]] == [1, 1]
    budget = result["budget"]
    assert budget["budget_seconds"] == 1.0 and budget["over_budget"]
    assert set(budget["per_method"]) == {"full", "lora"}
    for method in result["methods"]:
        assert budget["per_method"][method["method"]]["share_seconds"] == 0.5
        assert method["stopped"].startswith("budget:") and len(method["finals"]) == 1
        assert method["finals"][0]["status"] == "completed" and method["rank"] in (1, 2)
    assert (out / "compare.json").exists() and "over the budget" in (out / "report.md").read_text()
    assert "<table>" in (out / "report.html").read_text()


@pytest.mark.slow
def test_a_comparison_ranks_each_methods_best_and_resumes_for_free(tmp_path, tiny):
    out, so_far = tmp_path / "cmp", []

    def log(message: str) -> None:  # as lora's first pilot starts, full is done: compare.json says so far
        if "the first pilot of lora" in message and not so_far:
            so_far.append(json.loads((out / "compare.json").read_text()))
            so_far.append((out / "report.md").read_text())

    result = compare(easy_comparison(tmp_path, tiny), out, log=log)
    interim, report = so_far
    assert interim["pending"] == ["lora"] and "pending" not in result
    assert interim["answer"].startswith("So far, with 1 of 2 methods done (lora still to search and train): ")
    assert interim["answer"] in report and not result["answer"].startswith("So far")
    assert "| - | lora | - | - | not searched yet |" in report and "| not started yet |" in report
    assert "**lora**: not searched yet." in report
    full = next(m for m in interim["methods"] if m["method"] == "full")
    assert full["n"] == 2 and full["rank"] == 1
    assert full["finals"] == next(m for m in result["methods"] if m["method"] == "full")["finals"]
    pilots = [e for e in _ledger(out) if e["kind"] == "pilot"]
    assert len(pilots) == 16  # per method: 4 settings at 2 steps, the best 2 at 4 (the last rung) with 2 seeds each
    assert sum(e["folder"].endswith("/steps-4-seed-1") for e in pilots) == 4
    assert {m["method"]: len(m["pilots"]) for m in result["methods"]} == {"full": 4, "lora": 4}
    for method in result["methods"]:
        assert method["best"]["pilot_steps"] == 4 and method["n"] == 2 and method["mean"] is not None
        assert method["train_seconds"] > 0 and method["peak_memory_mb"] > 0 and method["stored_bytes"] > 0
        assert method["verdict"] in ("best", "within noise", "worse beyond noise")
        assert method["stopped"] is None
        for pilot in method["pilots"]:  # each pilot's validation loss (the options' cross-entropy) where it scored
            assert set(pilot["losses"]) == set(pilot["values"]) and all(v > 0 for v in pilot["losses"].values())
        assert method["last_rung_seeds"] == 2
        for pilot in method["pilots"]:  # at the last rung: the mean of its two seeds, each seed's score recorded
            assert set(pilot.get("seeds", {})) == ({"4"} if "4" in pilot["values"] else set())
            if "4" in pilot["values"]:
                assert pilot["values"]["4"] == pytest.approx(sum(pilot["seeds"]["4"]) / 2)
        ranked = sorted(method["pilots"], key=lambda p: (-p["values"]["2"], p["losses"]["2"], p["setting"]))
        assert {p["setting"] for p in ranked[:2]} == {p["setting"] for p in method["pilots"] if "4" in p["values"]}
    lora = next(m for m in result["methods"] if m["method"] == "lora")
    full = next(m for m in result["methods"] if m["method"] == "full")
    assert lora["trainable_params"] < full["trainable_params"] and lora["stored_bytes"] < full["stored_bytes"]
    assert [m["rank"] for m in result["methods"]] == [1, 2]
    report = (out / "report.md").read_text()
    assert result["answer"] in report and "## Budget" in report and "## Each method's bracket" in report
    pilot = result["methods"][0]["pilots"][0]
    assert f"{pilot['values']['2']:.3f} ({pilot['losses']['2']:.3f})" in report  # the score, then its loss
    # each run records its processor; methods timed on different ones are said to be (a run resumed elsewhere)
    assert all(m["cpus"] == [cpu_name()] for m in result["methods"]) and "different processors" not in report
    moved = json.loads(json.dumps(result))
    moved["methods"][1]["cpus"] = ["Another CPU"]
    text = " ".join(b[1] for b in document(moved) if b[0] == "p")
    first, second = moved["methods"][0]["method"], moved["methods"][1]["method"]
    assert "**Timed on different processors**: " in text
    assert f"{second} on Another CPU" in text and f"{first} on {cpu_name()}" in text
    moved["methods"][1]["cpus"] = ["not recorded"]
    text = " ".join(b[1] for b in document(moved) if b[0] == "p")
    assert f"{second} on a processor not recorded (runs before loralab recorded it)" in text
    last = next(p for p in result["methods"][0]["pilots"] if "4" in p["values"])
    assert f"= mean of {last['seeds']['4'][0]:.3f}, {last['seeds']['4'][1]:.3f}" in report
    before = _ledger(out)
    again = compare(easy_comparison(tmp_path, tiny), out, log=lambda _: None)
    assert [e for e in _ledger(out) if e["kind"] != "search"] == [e for e in before if e["kind"] != "search"]
    assert again["methods"] == result["methods"]


@pytest.mark.slow
def test_a_bracket_shaped_by_its_share_keeps_its_shape_when_resumed(tmp_path, tiny):
    """Neither --bracket-size nor --rungs: each method's bracket is shaped to fill its share once its first
    pilot has measured a step (brackets.json), runs as shaped (two settings at least in every rung it
    reaches), and a rerun plans the same runs: nothing is trained again."""
    out = tmp_path / "cmp"
    config = easy_comparison(tmp_path, tiny, budget_seconds=40.0, bracket_size=None, rungs=None, clock="cpu")
    result = compare(config, out, log=lambda _: None)
    shapes = json.loads((out / "brackets.json").read_text())
    assert set(shapes) == {"full", "lora"}
    for method in result["methods"]:
        shape = shapes[method["method"]]
        assert method["rung_steps"] == shape["rung_steps"] and method["bracket_settings"] == shape["settings"]
        assert method["bracket_filled"] and shape["rung_steps"][0] == 2 and shape["rung_steps"][-1] <= 4  # a final: 4
        assert 6 <= shape["settings"] <= 64
        assert shape["last_rung_seeds"] in (1, 2)  # two where they fit after the rungs, else one
        assert method["last_rung_seeds"] == (shape["last_rung_seeds"] if len(shape["rung_steps"]) > 1 else 1)
        reached = {int(k) for p in method["pilots"] for k in p["values"]}
        first = [p for p in method["pilots"] if "2" in p["values"]]
        assert len(first) <= shape["settings"]
        if len(reached) > 1:  # a later rung ran: whole, and with two settings at least
            assert all(sum(str(s) in p["values"] for p in method["pilots"]) >= 2 for s in reached)
        assert method["n"] == 2
    assert "shaped to fill its share" in (out / "report.md").read_text()
    before = [e for e in _ledger(out) if e["kind"] != "search"]
    (out / "brackets.json").write_text(json.dumps(shapes))  # as written; a rerun must not reshape
    again = compare(config, out, log=lambda _: None)
    assert [e for e in _ledger(out) if e["kind"] != "search"] == before
    assert json.loads((out / "brackets.json").read_text()) == shapes
    for a, b in zip(again["methods"], result["methods"]):
        assert {k: v for k, v in a.items() if a[k] != b[k]} == {}, (a["stopped"], b["stopped"])


_ARGS = ["compare", "--model", "{model}", "--train", "{folder}/train.csv", "--valid", "{folder}/valid.csv",
         "--device", "cpu", "--batch-size", "8", "--max-length", "16", "--methods", "full,lora", "--budget", "10000",
         "--seeds", "2", "--bracket-size", "4", "--min-steps", "2", "--eta", "2", "--rungs", "2",
         "--pilot-valid", "16", "--threads", "1", "--quiet", "--out", "{folder}/cmp"]


@pytest.mark.slow
def test_a_comparison_killed_mid_way_resumes_without_redoing_finished_runs(tmp_path, tiny):
    easy_comparison(tmp_path, tiny)  # writes the data files
    argv = [a.format(model=tiny, folder=tmp_path) for a in _ARGS]
    out = tmp_path / "cmp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    child = subprocess.Popen([sys.executable, "-m", "loralab", *argv], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    kill_when(child, lambda: any(json.loads(p.read_text() or "{}").get("status") == "completed"
                                 for p in out.glob(f"pilots/*/*/steps-4/{RECORD}")), what="a second-rung pilot")
    finished = _completed(out)
    assert len(finished) >= 5  # the first method's 4 first-rung pilots and a second-rung one
    # One method at a time: the second method has not started while the first's bracket runs.
    assert {p.relative_to(out).parts[1] for p in finished} == {"full"}
    assert not (out / "compare.json").exists()  # written after the first method's final runs

    assert main(argv) == 0
    for path, content in finished.items():  # read back, not trained again
        assert path.read_bytes() == content, path
    runs = [e["folder"] for e in _ledger(out) if e["kind"] in ("pilot", "final")]
    assert len(runs) == len(set(runs)) == 20, runs  # 16 pilots (the last rung with 2 seeds) and 4 final runs, none twice
    assert json.loads((out / "compare.json").read_text())["methods"][0]["n"] == 2


@pytest.mark.slow
def test_a_methods_unfinished_final_runs_run_before_the_next_method(tmp_path, tiny):
    """Rerun after a stop amid full's final runs (one gone, with everything of lora's): full's is trained again
    first, then lora's bracket and final runs, so the report written as lora starts has full's row whole."""
    import shutil

    out = tmp_path / "cmp"
    compare(easy_comparison(tmp_path, tiny), out, log=lambda _: None)
    (last,) = out.glob("finals/full/*/seed-1")
    shutil.rmtree(last), shutil.rmtree(out / "pilots" / "lora"), shutil.rmtree(out / "finals" / "lora")
    kept = [e for e in _ledger(out) if e["candidate"] == "full" and e["folder"] != last.relative_to(out).as_posix()]
    (out / "ledger.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    compare(easy_comparison(tmp_path, tiny), out, log=lambda _: None)
    again = [e for e in _ledger(out)[len(kept):] if e["kind"] != "search"]
    assert again[0]["folder"] == last.relative_to(out).as_posix()
    assert {e["candidate"] for e in again[1:]} == {"lora"} and len(again) == 1 + 8 + 2


@pytest.mark.slow
def test_a_run_killed_before_its_ledger_line_is_still_counted(tmp_path, tiny):
    """A kill between a run's record and its ledger line leaves a finished run the ledger does not know:
    resumed, the comparison counts it (at its training time) instead of spending that budget again."""
    out = tmp_path / "cmp"
    compare(easy_comparison(tmp_path, tiny), out, log=lambda _: None)
    lines = (out / "ledger.jsonl").read_text().splitlines()
    dropped = [line for line in lines if '/steps-4"' in line][:1] + [line for line in lines if '"kind": "final"' in line][:1]
    assert len(dropped) == 2
    (out / "ledger.jsonl").write_text("".join(line + "\n" for line in lines if line not in dropped))
    (out / "compare.json").unlink()
    finished = _completed(out)

    compare(easy_comparison(tmp_path, tiny), out, log=lambda _: None)
    for path, content in finished.items():  # read back, not trained again
        assert path.read_bytes() == content, path
    runs = [json.loads(line)["folder"] for line in lines if json.loads(line)["kind"] in ("pilot", "final")]
    folders = [e["folder"] for e in _ledger(out) if e["kind"] in ("pilot", "final")]
    assert len(folders) == len(set(folders)) == len(runs)
    assert {json.loads(line)["folder"] for line in dropped} <= set(folders)


def test_loralab_report_keeps_a_comparisons_own_report(tmp_path, tiny, capsys):
    """`loralab report` on a compare folder writes compare's report again (never the per-run report over
    it, which would rank pilots scored on part of the validation set); into another folder, the per-run
    report of the final runs alone."""
    out = tmp_path / "cmp"
    compare(easy_comparison(tmp_path, tiny, budget_seconds=1.0, seeds=2), out, log=lambda _: None)
    own = (out / "report.md").read_text()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").read_text() == own and own in capsys.readouterr().out
    assert not list(out.glob("*.png"))  # no per-run plots written beside it
    assert main(["report", str(out), "--out", str(tmp_path / "finals")]) == 0
    finals = (tmp_path / "finals" / "report.md").read_text()
    assert "4 runs in 2 rows" in finals and "steps-2" not in finals
    assert main(["report", str(out), "--metric", "accuracy"]) == 2
    assert "--metric" in capsys.readouterr().err


def test_a_second_process_on_the_folder_is_refused(tmp_path, tiny):
    out = tmp_path / "cmp"
    with folder_lock(out):
        with pytest.raises(LoralabError, match="another loralab sweep is running in this folder"):
            compare(easy_comparison(tmp_path, tiny), out, log=lambda _: None)
    assert not (out / "plan.json").exists()


def test_a_folder_holding_another_comparison_is_refused(tmp_path, tiny):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "plan.json").write_text('{"methods": []}')
    with pytest.raises(LoralabError, match="holds a comparison with other settings"):
        compare(easy_comparison(tmp_path, tiny), out, log=lambda _: None)


@pytest.mark.parametrize("change, message", [
    ({"--methods": "lora,nope"}, "--methods: unknown method 'nope'"),
    ({"--budget": "0"}, "invalid --budget '0'"),
    ({"--budget": "-3"}, "invalid --budget '-3'"),
    ({"--seeds": "0"}, "seeds"),
    ({"--train": "{folder}/missing.csv"}, "missing.csv: file not found"),
    ({"--metric": "mse"}, "invalid --metric 'mse': the multiple-choice task reports map@3, accuracy"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny, capsys, change, message):
    easy_comparison(tmp_path, tiny)
    args = list(_ARGS)
    for option, value in change.items():
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
    assert main([a.format(model=tiny, folder=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "cmp").exists()


@pytest.mark.slow
def test_a_final_run_that_a_last_rung_pilot_trained_is_that_pilots_weights_scored_on_all_the_data(tmp_path, tiny):
    """Two epochs of 30 examples in batches of 8 (the last batch short): 8 steps a final run, the bracket's last
    rung. The final runs of seeds 0 and 1 are the winner's two last-rung pilots scored on all 16 validation
    questions (pilots score 8), not trained again; seed 2 trains. Each equals the final run trained afresh:
    its losses, its weights and its scores."""
    from run_fixtures import easy_questions

    from loralab.runs import run

    easy_questions(tmp_path / "train.csv", 30, 0)
    config = easy_comparison(tmp_path, tiny, methods=("lora",), seeds=3, rungs=3, pilot_valid=8)
    config = dataclasses.replace(config, base=dataclasses.replace(
        config.base, training=dataclasses.replace(config.base.training, epochs=2.0)))
    out = tmp_path / "cmp"
    result = compare(config, out, log=lambda _: None)
    (method,) = result["methods"]
    assert method["rung_steps"] == [2, 4, 8] and method["best"]["pilot_steps"] == 8 and method["n"] == 3
    finals = {e["folder"]: e for e in _ledger(out) if e["kind"] == "final"}
    assert len(finals) == 3
    for folder, entry in finals.items():
        seed = int(folder.rsplit("-", 1)[1])
        record = json.loads((out / folder / RECORD).read_text())
        assert record["steps"] == 8 and record["valid"]["questions"] == 16
        if seed < 2:
            pilot = out / folder / record["trained_in"]
            assert pilot.name == ("steps-8" if seed == 0 else "steps-8-seed-1") and entry["steps"] == 0
            assert json.loads((pilot / RECORD).read_text())["valid"]["questions"] == 8
            assert method["finals"][seed]["trained_in"] == pilot.resolve().relative_to(out.resolve()).as_posix()
        else:
            assert "trained_in" not in record and entry["steps"] == 8
        fresh = run(RunConfig.from_dict(record["config"]), tmp_path / f"fresh-{seed}", progress=False,
                    log=lambda _: None)
        assert fresh["loss"] == record["loss"] and fresh["weights_sha256"] == record["weights_sha256"]
        assert {k: v for k, v in fresh["valid"].items()} == record["valid"]
    assert "Its final runs of seeds 0, 1: the best setting's last-rung pilots" in (out / "report.md").read_text()
    before = _ledger(out)
    compare(config, out, log=lambda _: None)  # a rerun reads the rescored finals back
    assert [e for e in _ledger(out) if e["kind"] != "search"] == [e for e in before if e["kind"] != "search"]
