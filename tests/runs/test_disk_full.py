"""A full disk (ENOSPC) in train, merge, predict and report, on a real 2 MB tmpfs: one line, exit 2,
nothing half-written, files that were there unchanged, and a run's record 'failed', never 'running'."""

import json

import pytest
from disk_fixtures import disk, fill, leftovers, refused  # noqa: F401  (disk is a fixture)
from run_fixtures import save_tiny_bert, short_run

from loralab.strategies import Strategy, StrategyConfig


@pytest.fixture(scope="module")
def model_and_run(tmp_path_factory, minilm_tokenizer):
    root = tmp_path_factory.mktemp("disk-full")
    model = save_tiny_bert(root / "tiny", minilm_tokenizer)
    short_run(root / "run", model, StrategyConfig(Strategy.FULL))  # its merged model: ~4 MB
    (root / "t.csv").write_text("id,prompt,A,B,answer\nq1,Why?,yes,no,A\nq2,How?,so,thus,B\n")
    return root


def test_train_marks_its_record_failed(disk, model_and_run, capsys):
    out = disk / "run"
    refused(capsys, ["train", "--train", str(model_and_run / "t.csv"), "--model", str(model_and_run / "tiny"),
                     "--strategy", "full", "--max-steps", "1", "--quiet", "--device", "cpu", "--out", str(out)])
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert not (out / "weights.safetensors").exists() and leftovers(disk) == []


def test_merge_leaves_nothing(disk, model_and_run, capsys):
    refused(capsys, ["merge", "--run", str(model_and_run / "run"), "--out", str(disk / "merged")])
    assert sorted(p.name for p in disk.iterdir()) == []


def test_predict_keeps_the_old_file(disk, model_and_run, capsys):
    (disk / "s.csv").write_text("id,prediction\nq1,A B\n")
    fill(disk)
    refused(capsys, ["predict", "--run", str(model_and_run / "run"), "--data", str(model_and_run / "t.csv"),
                     "--out", str(disk / "s.csv"), "--quiet", "--device", "cpu"])
    assert (disk / "s.csv").read_text() == "id,prediction\nq1,A B\n" and leftovers(disk) == []
