"""Trackers (`--log-to`): TensorBoard's event file read back with tensorboard's own EventAccumulator;
a real `mlflow server` on 127.0.0.1 read back through MLflow's client; a missing extra is one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import SCIENCE
from run_fixtures import save_tiny_bert
from loralab.errors import LoralabError
from loralab.runs import run
from loralab.runs.config import RunConfig
from loralab.runs.trackers import check_trackers

STEPS = 4


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("base"), minilm_tokenizer)


def config(base: Path, **training) -> RunConfig:
    return RunConfig.from_flat({
        "train": str(SCIENCE / "train.csv"), "valid": str(SCIENCE / "valid.csv"), "model": str(base),
        "train_limit": 8, "valid_limit": 8, "device": "cpu", "strategy.strategy": "lora", "training.lr": 5e-3,
        "training.batch_size": 2, "training.max_length": 32, "training.eval_every": 2,
        **{f"training.{k}": v for k, v in training.items()}})


def test_tensorboard_holds_the_steps_evaluations_and_final_metrics(base, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = run(config(base, log_to="tensorboard"), tmp_path, progress=False, log=lambda _: None)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, STEPS + 1))
    assert [e.value for e in loss] == pytest.approx(record["loss"], abs=1e-4)
    assert [e.step for e in events.Scalars("train/lr")] == list(range(1, STEPS + 1))
    assert [e.step for e in events.Scalars("eval/map@3")] == [2, 4]
    assert events.Scalars("valid/map@3")[0].value == pytest.approx(record["valid"]["map@3"])
    assert "record" in events.Tags()["tensors"] or "record/text_summary" in events.Tags()["tensors"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    pytest.importorskip("mlflow")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the mlflow server did not start")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, 15)  # the server and its workers, all of this test's own
        server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.slow
def test_an_mlflow_server_gets_the_params_steps_and_final_metrics(base, tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    record = run(config(base, log_to="mlflow", mlflow_uri=mlflow_server), tmp_path / "run", progress=False,
                 log=lambda _: None)
    client = MlflowClient(tracking_uri=mlflow_server)
    [found] = client.search_runs([client.get_experiment_by_name("loralab").experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params["training.lr"] == "0.005" and found.data.params["strategy.strategy"] == "lora"
    history = client.get_metric_history(found.info.run_id, "loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, STEPS + 1))
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(record["loss"], abs=1e-4)
    assert found.data.metrics["valid_map_at_3"] == pytest.approx(record["valid"]["map@3"])
    assert [a.path for a in client.list_artifacts(found.info.run_id)] == ["run.json"]
    assert not (tmp_path / "run" / "mlruns").exists()


@pytest.mark.slow
def test_mlflow_defaults_to_a_store_in_the_run_folder(base, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    record = run(config(base, log_to="mlflow", eval_every=0), tmp_path, progress=False, log=lambda _: None)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    [found] = client.search_runs([client.get_experiment_by_name("loralab").experiment_id])
    assert found.data.metrics["valid_map_at_3"] == pytest.approx(record["valid"]["map@3"])
    assert (tmp_path / "mlruns" / "artifacts" / found.info.run_id / "artifacts" / "run.json").is_file()


@pytest.mark.slow
def test_wandb_runs_offline_in_the_run_folder(base, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    record = run(config(base, log_to="wandb,tensorboard"), tmp_path, progress=False, log=lambda _: None)
    [folder] = (tmp_path / "wandb").glob("offline-run-*")
    assert (folder / "files" / "run.json").is_file() and record["status"] == "completed"
    assert (tmp_path / "tensorboard").is_dir()  # several trackers at once


def test_a_tracker_not_installed_is_one_line_naming_its_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(LoralabError, match=r"--log-to wandb needs the 'wandb' extra: pip install 'loralab\[wandb\]'"):
        check_trackers(("tensorboard", "wandb"))
