"""A sweep on a local Ray instance (2 CPUs, started here) writes the records an in-process sweep writes,
and a second `--ray` invocation after the first was killed resumes: done runs stay, the rest run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest

from processes import kill_when
from run_fixtures import save_tiny_bert
from loralab.errors import LoralabError
from loralab.runs.artifacts import RECORD, WEIGHTS
from loralab.sweeps.experiment import load_experiment
from loralab.sweeps.sweep import sweep

try:
    import ray
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not importable: the --ray sweep is NOT tested here "
                               "(install the extra: pip install -e '.[ray]')")

# What must match between the two sweeps; timing, dates and the machine may differ.
SAME = ("status", "config", "hyperparameters", "loss", "steps", "valid", "weights_sha256", "diverged_at_step",
        "trainable_params", "data")


def head(source, target, rows):
    with open(source, newline="") as f:
        lines = list(csv.reader(f))[: rows + 1]
    with open(target, "w", newline="") as f:
        csv.writer(f).writerows(lines)
    return target


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, minilm_tokenizer, science_exam):
    tmp = tmp_path_factory.mktemp("ray")
    save_tiny_bert(tmp / "tiny", minilm_tokenizer)
    head(science_exam / "train.csv", tmp / "train.csv", 8)
    head(science_exam / "valid.csv", tmp / "valid.csv", 4)
    path = tmp / "exp.yaml"
    path.write_text(textwrap.dedent("""
        base:
          train: train.csv
          valid: valid.csv
          model: tiny
          device: cpu
          training: {batch_size: 2, max_steps: 3, max_length: 32, warmup_ratio: 0.0, max_grad_norm: 0.0}
        runs:
          - {name: exploding, strategy: full, lr: 1.0e+30}
          - {name: full, strategy: full, lr: 1.0e-3}
          - {name: lora, strategy: lora, lr: 1.0e-3, seeds: [0, 1]}
        """))
    return path


@pytest.fixture(scope="module")
def cluster():
    # Ray's memory monitor kills workers once the node is 95% full, which on this shared machine other
    # jobs can cause; the runs here need little memory of their own.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
             logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def cli_sweep(experiment, out, address):
    command = [sys.executable, "-m", "loralab", "sweep", str(experiment), "--out", str(out), "--ray", address,
               "--threads", "1", "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def records(out):
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob(f"*/{RECORD}")}


@pytest.mark.slow
@needs_ray
def test_a_killed_ray_sweep_resumes_and_matches_the_in_process_sweep(experiment, cluster, tmp_path):
    import torch

    torch.set_num_threads(1)
    local = tmp_path / "local"
    sweep(load_experiment(experiment), local, progress=False, log=lambda _: None)
    expected = records(local)
    assert len(expected) == 4 and sum(r["status"] == "diverged" for r in expected.values()) == 1

    out = tmp_path / "ray"
    first = cli_sweep(experiment, out, cluster)
    # a bound, not a timing: a loaded 2-core machine starts Ray workers slowly
    kill_when(first, lambda: any(r.get("status") == "completed" for r in records(out).values()),
              what="a run came back from Ray", timeout=900)
    kept = records(out)
    assert 1 <= len(kept) < 4, f"the kill came too late to test resuming: {sorted(kept)}"

    second = cli_sweep(experiment, out, cluster)
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert f"{len(kept)} already done, {4 - len(kept)} to run" in stdout
    got = records(out)
    for folder, record in kept.items():
        assert got[folder]["created"] == record["created"]  # a finished run is not redone
    assert got.keys() == expected.keys()
    for folder, want in expected.items():
        assert {k: got[folder].get(k) for k in SAME} == {k: want.get(k) for k in SAME}, folder
        assert (out / folder / WEIGHTS).is_file() == (want["status"] == "completed")
    assert (out / "report.md").is_file()


@needs_ray
def test_no_cluster_at_the_address_is_one_line(experiment, tmp_path):
    result = subprocess.run([sys.executable, "-m", "loralab", "sweep", str(experiment), "--out", str(tmp_path / "o"),
                             "--ray", "127.0.0.1:1", "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("loralab: error: --ray 127.0.0.1:1")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before the sweep wrote anything


def test_without_ray_the_option_says_how_to_get_it(monkeypatch):
    from loralab.sweeps.on_ray import ray_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    with pytest.raises(LoralabError, match=r"pip install 'loralab\[ray\]'"):
        ray_executor("auto")


def test_a_run_asks_ray_for_its_threads_and_a_gpu_when_it_runs_on_cuda():
    import dataclasses

    from loralab.runs.config import RunConfig
    from loralab.sweeps.on_ray import resources

    config = RunConfig(train="train.csv")  # device auto
    assert resources(dataclasses.replace(config, device="cpu"), 2, cluster_gpus=4) == {"num_cpus": 2, "num_gpus": 0}
    assert resources(dataclasses.replace(config, device="cuda:1"), 1, cluster_gpus=0) == {"num_cpus": 1, "num_gpus": 1}
    assert resources(config, 1, cluster_gpus=2) == {"num_cpus": 1, "num_gpus": 1}
    assert resources(config, 1, cluster_gpus=0) == {"num_cpus": 1, "num_gpus": 0}
