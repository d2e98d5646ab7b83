"""Resume after a real `kill -9`: a `loralab train` process killed about half way, then the same
command again, ends with weights bitwise equal to an unbroken run's (CPU, dropout on), full and LoRA;
and a sweep resumes its killed run from the checkpoint the same way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCIENCE
from processes import kill_when
from run_fixtures import save_tiny_bert
from loralab.runs.checkpoint import FOLDER, INDEX

STEPS = 24  # 4 epochs of 6 steps: the kill lands at or after the epoch boundary at step 12
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("base"), minilm_tokenizer, hidden=64)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")


def _train_args(base: Path, out: Path, strategy: str) -> list[str]:
    args = ["train", "--train", str(SCIENCE / "train.csv"), "--model", str(base), "--strategy", strategy,
            "--train-limit", "12", "--batch-size", "2", "--max-length", "48", "--lr", "1e-3",
            "--epochs", "4", "--checkpoint-every", "2", "--device", "cpu", "--threads", "1", "--quiet",
            "--out", str(out)]
    return args + (["--lora-dropout", "0.1"] if strategy == "lora" else [])


def _step(out: Path) -> int:
    try:
        return json.loads((out / FOLDER / INDEX).read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def kill_half_way(command: list[str], out: Path, at: int = STEPS // 2, timeout: float = 240) -> None:
    """Start `command`, wait (bounded) for a checkpoint at step `at` or later in `out`, then kill -9 it."""
    process = subprocess.Popen([sys.executable, "-m", "loralab", *command], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(process, lambda: _step(out) >= at, what=f"a checkpoint at step {at}", timeout=timeout)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loralab", *args], env=_env(), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_a_killed_train_command_resumes_bitwise(base, tmp_path, strategy):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = cli(*_train_args(base, whole, strategy))
    assert done.returncode == 0, done.stderr
    kill_half_way(_train_args(base, broken, strategy), broken)
    assert json.loads((broken / "run.json").read_text())["status"] == "running"
    killed_at = _step(broken)
    assert STEPS // 2 <= killed_at < STEPS
    again = cli(*_train_args(base, broken, strategy))
    assert again.returncode == 0, again.stderr
    record = json.loads((broken / "run.json").read_text())
    assert record["status"] == "completed" and record["resumed_at_steps"] == [killed_at]
    assert (whole / "weights.safetensors").read_bytes() == (broken / "weights.safetensors").read_bytes()
    refused = cli(*_train_args(base, broken, strategy))
    assert refused.returncode == 2 and "finished run" in refused.stderr


@pytest.mark.slow
def test_a_killed_sweep_resumes_its_run_from_the_checkpoint(base, tmp_path):
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        f"name: resume\nbase:\n  train: {SCIENCE / 'train.csv'}\n  model: {base}\n  train_limit: 12\n  device: cpu\n"
        "  training: {batch_size: 2, max_length: 48, lr: 0.001, epochs: 4, checkpoint_every: 2}\n"
        "  strategy:\n    lora: {dropout: 0.1}\nruns:\n  - {name: lora, strategy: lora}\n")
    sweep = ["sweep", str(experiment), "--quiet", "--threads", "1"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert cli(*sweep, "--out", str(whole)).returncode == 0
    [folder] = [p.name for p in whole.iterdir() if (p / "run.json").is_file()]
    kill_half_way([*sweep, "--out", str(broken)], broken / folder)
    again = cli(*sweep, "--out", str(broken))
    assert again.returncode == 0, again.stderr
    assert "resuming from its checkpoint" in again.stdout + again.stderr
    record = json.loads((broken / folder / "run.json").read_text())
    assert record["status"] == "completed" and record["resumed_at_steps"]
    assert (whole / folder / "weights.safetensors").read_bytes() == (broken / folder / "weights.safetensors").read_bytes()
