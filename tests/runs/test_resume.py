"""Checkpoints and resume: a run stopped after a checkpoint and run again ends with weights bitwise
equal to an unbroken run's (CPU, dropout on), for full fine-tuning and LoRA; a finished or foreign
folder is refused, saying which case it is."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import SCIENCE
from run_fixtures import save_tiny_bert
from loralab.errors import LoralabError
from loralab.runs import run
from loralab.runs.checkpoint import FOLDER, INDEX, check_folder
from loralab.runs.config import RunConfig
from loralab.runs.during import DuringTraining

STEPS = 6


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("base"), minilm_tokenizer)


def config(base: Path, strategy: str, **training) -> RunConfig:
    flat = {"train": str(SCIENCE / "train.csv"), "model": str(base), "train_limit": 24, "device": "cpu",
            "strategy.strategy": strategy, "training.lr": 1e-3, "training.batch_size": 2, "training.max_length": 32,
            "training.grad_accum": 2, "training.max_steps": STEPS, "training.checkpoint_every": 2, **training}
    if strategy == "lora":
        flat.update({"strategy.lora.dropout": 0.1, "strategy.lora.r": 4})
    return RunConfig.from_flat(flat)


class Killed(BaseException):
    """Stands for kill -9 inside the process (the subprocess tests send the real one)."""


def killed_at(monkeypatch, step: int) -> None:
    hook = DuringTraining.__call__

    def call(self, s):
        out = hook(self, s)
        if s.step == step:
            raise Killed
        return out

    monkeypatch.setattr(DuringTraining, "__call__", call)


@pytest.mark.parametrize("strategy", ["full", "lora", "lora+eval"])
def test_a_resumed_run_ends_bitwise_equal(base, tmp_path, monkeypatch, strategy):
    planned = config(base, strategy.split("+")[0])
    if strategy == "lora+eval":  # the curve, the best step and its weights survive the stop too
        planned = planned.replace({"valid": str(SCIENCE / "valid.csv"), "valid_limit": 8, "eval_every": 1})
    whole = run(planned, tmp_path / "whole", progress=False, log=lambda _: None)
    with monkeypatch.context() as m:
        killed_at(m, 3)  # after the checkpoint at step 2, mid-epoch
        with pytest.raises(Killed):
            run(planned, tmp_path / "broken", progress=False, log=lambda _: None)
    record = json.loads((tmp_path / "broken" / "run.json").read_text())
    assert record["status"] == "running"
    assert json.loads((tmp_path / "broken" / FOLDER / INDEX).read_text())["step"] == 2
    assert check_folder(tmp_path / "broken", planned) is True
    again = run(planned, tmp_path / "broken", progress=False, log=lambda _: None)
    assert again["resumed_at_steps"] == [2]
    assert again["loss"] == whole["loss"]
    assert again.get("curve") == whole.get("curve") and again.get("kept_step") == whole.get("kept_step")
    a = load_file(tmp_path / "whole" / "weights.safetensors")
    b = load_file(tmp_path / "broken" / "weights.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert (tmp_path / "whole" / "weights.safetensors").read_bytes() == (tmp_path / "broken" / "weights.safetensors").read_bytes()
    assert not (tmp_path / "broken" / FOLDER).exists()


def test_a_lora_checkpoint_holds_only_the_trainable_part(base, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        killed_at(m, 3)
        with pytest.raises(Killed):
            run(config(base, "lora"), tmp_path, progress=False, log=lambda _: None)
    names = load_file(next((tmp_path / FOLDER).glob("state-*.safetensors"))).keys()
    weights = [n for n in names if n.startswith("weights/")]
    assert weights and all("lora" in n or "classifier" in n for n in weights)


def test_folders_that_cannot_be_resumed_say_why(base, tmp_path, monkeypatch):
    planned = config(base, "lora")
    run(planned, tmp_path / "done", progress=False, log=lambda _: None)
    with pytest.raises(LoralabError, match="finished run"):
        check_folder(tmp_path / "done", planned)
    other = dataclasses.replace(planned, training=dataclasses.replace(planned.training, lr=2e-3))
    with monkeypatch.context() as m:
        killed_at(m, 1)  # before any checkpoint
        with pytest.raises(Killed):
            run(planned, tmp_path / "early", progress=False, log=lambda _: None)
    with pytest.raises(LoralabError, match="without a checkpoint"):
        check_folder(tmp_path / "early", planned)
    with pytest.raises(LoralabError, match="different configuration"):
        check_folder(tmp_path / "early", other)
    # checkpoint_every is not part of what the run is: changing it still resumes
    assert check_folder(tmp_path / "nothing", planned) is False
