"""Data parallel equals one process: 2 gloo processes x batch 4 take the steps 1 process x batch 8 takes.

The ranks are started with torch.multiprocessing (as torchrun would, through the same environment
variables); dropout is off in the tiny model, since two processes cannot draw one process's masks.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import transformers

from conftest import _SIZES
from run_fixtures import random_questions
from loralab.errors import LoralabError
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.subspace import SubspaceConfig
from loralab.tasks.multiple_choice import TASK as MC
from loralab.training import TrainConfig, evaluate, train
from loralab.training.distributed import SINGLE, DataParallel

pytestmark = pytest.mark.slow  # processes that start, join and reduce: tens of seconds each

# (name, strategy, training settings, examples): 13 examples end each epoch on a short global batch
# split 3/2; 9 end on a batch of one, which leaves rank 1 with nothing (share 0).
CASES = [
    ("full", Strategy.FULL, dict(batch_size=4, epochs=2), 13),
    ("lora", Strategy.LORA, dict(batch_size=4, epochs=2), 13),
    ("full-accum", Strategy.FULL, dict(batch_size=2, grad_accum=2, epochs=2), 13),
    ("lora-tail-of-one", Strategy.LORA, dict(batch_size=4, epochs=2), 9),
    ("full-unused", Strategy.FULL, dict(batch_size=4, epochs=1), 13),
    ("subspace-ddp-only", Strategy.SUBSPACE, dict(batch_size=4, epochs=1), 13),  # --fsdp refuses it
]
SHARDABLE = [case for case, *_ in CASES if not case.endswith(("unused", "ddp-only"))]


def model_for(case: str, strategy: Strategy) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(**_SIZES, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = transformers.BertForMultipleChoice(config)
    if case.endswith("unused"):
        model.unused = torch.nn.Linear(3, 3)  # trains (full) but the loss never reaches it
    apply_strategy(model, StrategyConfig(strategy, subspace=SubspaceConfig(dim=50, projection="dense")))
    return model


def one_case(case, strategy, settings, n, parallel, world):
    model = model_for(case, strategy)
    config = TrainConfig(lr=3e-3, warmup_ratio=0.0, seed=3, **dict(settings, batch_size=settings["batch_size"] * 2 // world))
    report_groups = None
    result = train(model, random_questions(n, seed=1), config, task=MC, pad_id=0, progress=False, groups=report_groups,
                   parallel=parallel)
    valid = random_questions(11, seed=2)
    metrics = evaluate(model, valid, task=MC, pad_id=0, batch_size=3, parallel=parallel)
    # Not classifier.bias: a softmax over the choices ignores a shift shared by all, so its gradient is
    # rounding noise (~1e-9), which AdamW scales up to steps of size lr in whatever direction.
    state = {k: v.tolist() for k, v in parallel.whole(dict(model.named_parameters())).items()
             if "lora" in k or "theta" in k or k == "classifier.weight" or k.endswith("attention.self.query.weight")}
    return {"losses": result.losses, "steps": result.steps, "metrics": metrics, "state": state,
            "distributed": result.extra.get("distributed"), "tokens": result.tokens}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    results = {}
    for sharded in (False, True):
        parallel = DataParallel.from_environment(sharded=sharded)
        with parallel.joined(torch.device("cpu")):
            results[str(sharded)] = {case: one_case(case, strategy, settings, n, parallel, world)
                                     for case, strategy, settings, n in CASES if not sharded or case in SHARDABLE}
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def spawned(tmp_path_factory) -> dict[bool, list[dict]]:
    """Both ranks' results, DDP (False) and FSDP2 (True), from one start of two processes."""
    out = tmp_path_factory.mktemp("ranks")
    for attempt in range(3):  # the free port found may be taken before rank 0 binds it: try another
        try:
            torch.multiprocessing.spawn(_worker, args=(2, _port(), str(out)), nprocs=2, join=True)
            break
        except torch.multiprocessing.ProcessRaisedException as e:
            if attempt == 2 or not any(s in str(e) for s in ("EADDRINUSE", "address already in use", "Address in use")):
                raise
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return {sharded: [rank[str(sharded)] for rank in ranks] for sharded in (False, True)}


@pytest.fixture(scope="module")
def single():
    torch.set_num_threads(1)
    return {case: one_case(case, strategy, settings, n, SINGLE, 1) for case, strategy, settings, n in CASES}


def assert_same_run(got: dict, want: dict) -> None:
    assert got["steps"] == want["steps"] and len(got["losses"]) == len(want["losses"])
    for step, (a, b) in enumerate(zip(got["losses"], want["losses"])):
        assert abs(a - b) < 1e-5, f"step {step}: {a} vs {b}"
    assert got["tokens"] == want["tokens"]
    assert got["metrics"].keys() == want["metrics"].keys()
    for name, value in want["metrics"].items():
        assert abs(got["metrics"][name] - value) < 1e-5, name
    for name, value in want["state"].items():
        assert torch.allclose(torch.tensor(got["state"][name]), torch.tensor(value), atol=1e-5), name


def test_two_ddp_processes_equal_one_process_with_the_global_batch(spawned, single):
    ranks = spawned[False]
    for case, *_ in CASES:
        for rank in ranks:  # every rank holds the same result, the global one
            assert_same_run(rank[case], single[case])
        info = ranks[0][case]["distributed"]
        assert info["sharding"] == "ddp" and info["world_size"] == 2 and info["backend"] == "gloo"
        model = model_for(case, dict((c, s) for c, s, *_ in CASES)[case])
        assert info["reduced_bytes_per_step"] == 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert ranks[0]["full-unused"]["distributed"]["unused_trainable_parameters"] == ["unused.weight", "unused.bias"]
    assert ranks[0]["full"]["distributed"]["unused_trainable_parameters"] == []
    # a LoRA run reduces a small fraction of what a full run reduces
    assert ranks[0]["lora"]["distributed"]["reduced_bytes_per_step"] < ranks[0]["full"]["distributed"]["reduced_bytes_per_step"] / 5


def test_two_fsdp2_processes_equal_one_process(spawned, single):
    ranks = spawned[True]
    for case in SHARDABLE:
        for rank in ranks:
            assert_same_run(rank[case], single[case])
        info = ranks[0][case]["distributed"]
        assert info["sharding"] == "fsdp2" and info["gathered_bytes_per_forward_backward"] > 0


def test_a_rank_takes_a_near_equal_slice_and_its_share():
    collate = lambda items: {"items": items}  # noqa: E731
    chunk = list(range(5))
    parts = [DataParallel(rank=r, world=2).shard(chunk, collate) for r in range(2)]
    assert [p[0]["items"] for p in parts] == [[0, 1], [2, 3, 4]]
    assert [p[1] for p in parts] == [2 * 2 / 5, 2 * 3 / 5]
    # one example for two ranks: one rank computes it at share 2, the other joins with share 0
    assert sorted(DataParallel(rank=r, world=2).shard([7], collate)[1] for r in range(2)) == [0.0, 2.0]
    assert SINGLE.shard(chunk, collate) == ({"items": chunk}, 1.0)


def test_evaluation_shards_are_equal_and_gathered_in_order():
    items = list(range(7))
    parts = [DataParallel(rank=r, world=3).split(items) for r in range(3)]
    assert parts == [[0, 1, 2], [3, 4, 5], [6, 0, 0]]  # padded: every rank runs the same batches


@pytest.mark.parametrize("environ,message", [
    ({"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0"}, "RANK"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}, "rank 2 of 2"),
])
def test_a_bad_environment_is_one_line(environ, message):
    with pytest.raises(LoralabError, match=message):
        DataParallel.from_environment(environ=environ)


def test_fsdp_without_torchrun_is_refused():
    with pytest.raises(LoralabError, match="torchrun"):
        DataParallel.from_environment(sharded=True, environ={})
    assert DataParallel.from_environment(environ={}) is SINGLE
