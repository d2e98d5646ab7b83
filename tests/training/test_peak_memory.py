"""A run's peak memory on CPU does not count heap an earlier run in the same process freed."""

import sys

import pytest
import torch

from loralab.training import loop, memory
from loralab.training.memory import PeakMemory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS is read from /proc (Linux)")


def freed_then_measured() -> float:
    """Peak RSS (MB) of an empty block entered after ~800 MB of small tensors were freed, a few kept."""
    tensors = [torch.empty(100, 100).fill_(1.0) for _ in range(20_000)]  # 40 KB each: glibc's heap, not mmap
    survivors = tensors[::1000]  # pin some pages, as a sweep's earlier run leaves a few objects behind
    del tensors
    with PeakMemory("cpu") as memory:
        pass
    del survivors
    return memory.peak_mb


def test_freed_heap_of_an_earlier_run_is_not_counted(monkeypatch):
    baseline = freed_then_measured()
    monkeypatch.setattr(memory, "_release_freed_memory", lambda: None)
    untrimmed = freed_then_measured()
    assert untrimmed - baseline > 400  # the check can fail: without the release the freed heap is counted


def tiny_run(**training):
    from conftest import tiny_model
    from loralab.strategies import Strategy, StrategyConfig, apply_strategy
    from loralab.tasks.multiple_choice import TASK as MC
    from loralab.training import TrainConfig, train
    from run_fixtures import random_questions

    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(Strategy.FULL))
    config = TrainConfig(lr=1e-2, batch_size=4, epochs=2, warmup_ratio=0.0, **training)
    return train(model, random_questions(), config, task=MC, pad_id=0, progress=False)


@pytest.mark.parametrize("every, trims", [(1, 6), (4, 1), (0, 0)])
def test_freed_heap_goes_back_every_n_cpu_steps_and_computes_the_same(monkeypatch, every, trims):
    reference = tiny_run(trim_heap_every=0)
    calls = []
    for module in (loop, memory):  # the loop's trims, and PeakMemory's before the run
        monkeypatch.setattr(module, "release_heap", lambda collect=False: calls.append(1))  # counted, not trimmed
    counted = tiny_run(trim_heap_every=every)
    assert counted.steps == 6
    assert len(calls) == trims + 1  # after every `every` steps, and once before the run (PeakMemory)
    monkeypatch.undo()
    assert tiny_run(trim_heap_every=every).losses == counted.losses == reference.losses  # memory moves, not arithmetic


def test_a_record_trimmed_at_another_cadence_is_the_same_run():
    from loralab.runs.config import RunConfig
    from loralab.runs.state import same_config
    from loralab.training import TrainConfig

    planned = RunConfig(train="t.csv", training=TrainConfig(trim_heap_every=4))
    recorded = RunConfig(train="t.csv", training=TrainConfig(trim_heap_every=0)).to_dict()
    assert same_config(recorded, planned)
    recorded["training"]["lr"] = 1.0
    assert not same_config(recorded, planned)  # the check can fail
