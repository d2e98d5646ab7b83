"""`torchrun --nproc_per_node 2 -m loralab sweep ...` the way a user runs it: rank 0 alone writes each
record and weights, evaluation is sharded and gathered, and a sweep whose rank 1 was killed mid-run
resumes like any other: the finished run stays, the unfinished one is redone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from run_fixtures import save_tiny_bert
from loralab.runs import load_run
from loralab.runs.artifacts import RECORD, WEIGHTS
from loralab.training import evaluate

pytestmark = pytest.mark.slow  # processes that start, join and reduce: tens of seconds each


# Generous limits: under load (a shared CPU, a test suite beside) starting two ranks and a run takes minutes.
START, STOP, FINISH = 600, 300, 900


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str) -> subprocess.Popen:
    # A fixed free port for the rendezvous (--standalone picks one too, but its own c10d store on port 0
    # has clashed with a neighbouring job's); a long rendezvous timeout for a loaded machine.
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_port()}",
               "--rdzv-conf", "join_timeout=600,read_timeout=300",
               "-m", "loralab", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def rank_process(parent: int, rank: int) -> int | None:
    """The pid of the worker of `rank` that torchrun (`parent`) started, from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    return None


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, minilm_tokenizer, science_exam):
    tmp = tmp_path_factory.mktemp("torchrun")
    save_tiny_bert(tmp / "tiny", minilm_tokenizer)
    path = tmp / "exp.yaml"
    # Rank 1 is killed once the second run's record says it is running.
    path.write_text(textwrap.dedent(f"""
        base:
          train: {science_exam / 'train.csv'}
          valid: {science_exam / 'valid.csv'}
          model: tiny
          device: cpu
          train_limit: 12
          valid_limit: 7
          training: {{batch_size: 2, max_length: 32, warmup_ratio: 0.0, lr: 1.0e-3}}
        runs:
          - {{name: short, strategy: lora, max_steps: 3}}
          - {{name: long, strategy: full, epochs: 20}}
        """))
    return path


def test_a_sweep_killed_on_rank_1_resumes_and_rank_0_writes_the_records(experiment, tmp_path):
    out = tmp_path / "out"
    first = torchrun("sweep", str(experiment), "--out", str(out), "--threads", "1", "--quiet", "--no-report")
    long_record = None
    deadline = time.monotonic() + START
    while long_record is None:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, f"the long run did not start in {START} s"
        started = [p for p in out.glob(f"full*/{RECORD}")]
        long_record = started[0] if started else None
        time.sleep(0.1)
    victim = rank_process(first.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    first.communicate(timeout=STOP)
    assert first.returncode != 0  # torchrun stops every rank when one dies
    short_folder = next(out.glob("lora*"))
    short = json.loads((short_folder / RECORD).read_text())
    assert short["status"] == "completed" and short["distributed"]["world_size"] == 2
    assert json.loads(long_record.read_text())["status"] == "running"

    second = torchrun("sweep", str(experiment), "--out", str(out), "--threads", "1", "--quiet", "--no-report")
    stdout, stderr = second.communicate(timeout=FINISH)
    assert second.returncode == 0, stderr
    assert "1 already done, 1 to run" in stdout and stdout.count("already done") == 1  # rank 0 alone speaks
    assert json.loads((short_folder / RECORD).read_text())["created"] == short["created"]
    done = json.loads(long_record.read_text())
    assert done["status"] == "completed" and done["distributed"]["global_batch_size"] == 4
    assert done["distributed"]["reduced_bytes_per_step"] == 4 * done["trainable_params"]
    assert sorted(p.name for p in long_record.parent.iterdir()) == [RECORD, WEIGHTS]  # no rank's leftovers

    for folder in (short_folder, long_record.parent):
        assert_scores_reproduce(folder)


def assert_scores_reproduce(folder: Path) -> None:
    """The sharded, gathered evaluation equals one process scoring the saved weights."""
    from loralab.tasks import get_task

    torch.set_num_threads(1)
    record = json.loads((folder / RECORD).read_text())
    loaded = load_run(folder, device="cpu")
    task = get_task(record["task"])
    examples = task.read(loaded.config.valid, loaded.config.task, limit=loaded.config.valid_limit)
    items = task.encode(examples, loaded.tokenizer, loaded.config.training.max_length, loaded.space)
    again = evaluate(loaded.model, items, task=task, pad_id=loaded.tokenizer.pad_token_id)
    for name in ("map@3", "accuracy"):
        assert abs(again[name] - record["valid"][name]) < 1e-6, (folder.name, name)


def test_fsdp_train_saves_whole_weights_that_one_process_loads(experiment, tmp_path, science_exam):
    out = tmp_path / "fsdp"
    process = torchrun("train", "--train", str(science_exam / "train.csv"), "--valid", str(science_exam / "valid.csv"),
                       "--model", str(experiment.parent / "tiny"), "--strategy", "lora", "--fsdp", "--train-limit", "8",
                       "--valid-limit", "5", "--batch-size", "2", "--max-length", "32", "--max-steps", "2",
                       "--device", "cpu", "--threads", "1", "--quiet", "--out", str(out))
    stdout, stderr = process.communicate(timeout=FINISH)
    assert process.returncode == 0, stderr
    assert stdout.count("run        ") == 1  # rank 0 alone prints the summary
    record = json.loads((out / RECORD).read_text())
    assert record["distributed"]["sharding"] == "fsdp2" and record["steps"] == 2
    assert_scores_reproduce(out)
