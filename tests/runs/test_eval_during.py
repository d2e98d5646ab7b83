"""Evaluation during training: the curve in run.json, early stopping, and the best step's weights kept."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from conftest import SCIENCE
from run_fixtures import save_tiny_bert
from loralab.runs import one_run, run
from loralab.runs.config import RunConfig
from loralab.runs.during import DuringTraining
from loralab.validate import SettingError

# The validation metric peaks at the third evaluation, then falls: patience 2 stops training at step 5.
PEAKED = [0.40, 0.60, 0.80, 0.70, 0.65, 0.50, 0.45, 0.40]


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("base"), minilm_tokenizer)


def config(base, **training) -> RunConfig:
    flat = {"train": str(SCIENCE / "train.csv"), "valid": str(SCIENCE / "valid.csv"), "model": str(base),
            "train_limit": 24, "valid_limit": 8, "device": "cpu", "strategy.strategy": "lora",
            "strategy.lora.dropout": 0.1, "training.lr": 5e-3, "training.batch_size": 2, "training.max_length": 32,
            "training.max_steps": 10, "training.eval_every": 1, "training.eval_limit": 4}
    return RunConfig.from_flat({**flat, **{f"training.{k}": v for k, v in training.items()}})


@pytest.fixture
def peaked(monkeypatch):
    """The run's evaluations during training read PEAKED in turn; the final one scores for real. Every
    step's trained weights are kept for the test."""
    real, seen, weights = one_run.evaluate, [], {}

    def scripted(model, items, **kwargs):
        if len(items) == 4:  # the eval_limit slice
            seen.append(len(seen))
            return {"map@3": PEAKED[len(seen) - 1], "accuracy": 0.0, "questions": 4}
        return real(model, items, **kwargs)

    hook = DuringTraining.__call__

    def call(self, step):
        weights[step.step] = {k: v.detach().clone() for k, v in self.weights().items()}
        return hook(self, step)

    monkeypatch.setattr(one_run, "evaluate", scripted)
    monkeypatch.setattr(DuringTraining, "__call__", call)
    return weights


def test_early_stopping_keeps_the_best_steps_weights(base, tmp_path, peaked):
    record = run(config(base, early_stopping=2), tmp_path, progress=False, log=lambda _: None)
    assert [point["step"] for point in record["curve"]] == [1, 2, 3, 4, 5]
    assert [point["map@3"] for point in record["curve"]] == PEAKED[:5]
    assert record["stopped_early_at_step"] == 5 and record["steps"] == 5
    assert record["best_step"] == record["kept_step"] == 3
    kept = load_file(tmp_path / "weights.safetensors")
    assert kept.keys() == peaked[3].keys()
    assert all(kept[k].equal(peaked[3][k]) for k in kept)
    assert not all(kept[k].equal(peaked[5][k]) for k in kept)
    assert json.loads((tmp_path / "run.json").read_text())["kept_step"] == 3
    assert "valid" in record  # the kept weights scored on the whole validation file


def test_keep_last_keeps_the_last_steps_weights(base, tmp_path, peaked):
    record = run(config(base, early_stopping=2, keep="last"), tmp_path, progress=False, log=lambda _: None)
    assert record["kept_step"] == 5
    kept = load_file(tmp_path / "weights.safetensors")
    assert all(kept[k].equal(peaked[5][k]) for k in kept)


def test_evaluating_needs_a_validation_file_and_early_stopping_an_evaluation(base, tmp_path):
    with pytest.raises(SettingError, match="eval_every"):
        run(RunConfig.from_flat({**config(base).flat(), "valid": None}), tmp_path, progress=False, log=lambda _: None)
    with pytest.raises(SettingError, match="early_stopping"):
        config(base, eval_every=0, early_stopping=2)
