"""Data parallel on this machine, and what each strategy puts on the network.

1. Steps per second of loralab's training loop on MiniLM, one process x batch 2b against two gloo
   processes x batch b (the same global batch, so the same optimizer steps), full and LoRA, one torch
   thread per process. Two processes start once (torch.multiprocessing); in each round rank 0 first
   trains alone while rank 1 waits at a barrier, then both train together, so the one- and
   two-process timings alternate and share the machine's noise. On a shared 2-core CPU the two
   processes contend with every other job: the figure is this machine's, not data parallelism's.

2. Bytes reduced per optimizer step by each strategy, computed from parameter counts (the models are
   built on the meta device, nothing runs): DDP all-reduces the gradient of every trained parameter
   once per step (fp32: 4 bytes each; a ring all-reduce sends about 2 (N-1)/N times that per rank).
   FSDP2 reduce-scatters the same gradients, and also all-gathers every sharded weight in the forward
   and again in the backward of each micro-batch, frozen or not: the last column.

    python benchmarks/distributed.py                # writes benchmarks/results/distributed.json and .md
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

STRATEGIES = ("full", "attention", "qv", "lora", "subspace")
TIMED = ("full", "lora")


def configurations() -> dict:
    """(config, model class, what it is) of the three models whose traffic is counted."""
    import transformers

    from loralab.models import resolve_model

    return {
        "MiniLM-L6 (22.7M)": (transformers.AutoConfig.from_pretrained(resolve_model("minilm")),
                              transformers.AutoModelForMultipleChoice),
        "MPNet-base (109M)": (transformers.MPNetConfig(vocab_size=30527, hidden_size=768, num_hidden_layers=12,
                                                       num_attention_heads=12, intermediate_size=3072,
                                                       max_position_embeddings=514),
                              transformers.AutoModelForMultipleChoice),
        "Llama 7B (LLaMA-1 7B shape, classification head)": (
            transformers.LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                     num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                                     num_labels=2, pad_token_id=0),
            transformers.AutoModelForSequenceClassification),
    }


def traffic(subspace_dim: int) -> dict:
    """Per model and strategy: trained parameters and the bytes DDP and FSDP2 move per step."""
    from loralab.models import head_names
    from loralab.strategies import StrategyConfig, apply_strategy

    out = {}
    for name, (config, cls) in configurations().items():
        rows = {}
        for strategy in STRATEGIES:
            with torch.device("meta"):
                model = cls.from_config(config)
            total = sum(p.numel() for p in model.parameters())
            if strategy == "subspace":
                # theta's d numbers and the head, which trains directly; the projection is not built
                # (for 7B its buffers would take tens of GB). Checked against apply_strategy on MiniLM below.
                heads = head_names(model)
                trained = subspace_dim + sum(p.numel() for n, p in model.named_parameters() if n.split(".")[0] in heads)
            else:
                report = apply_strategy(model, StrategyConfig(strategy))
                trained, total = report.trainable_params, report.total_params
            rows[strategy] = {"trained_params": trained, "total_params": total,
                              "ddp_allreduce_bytes_per_step": 4 * trained,
                              # --fsdp refuses the subspace strategy (its weights are computed from theta)
                              "fsdp_gather_bytes_per_micro_batch": None if strategy == "subspace" else 2 * 4 * total}
        full = rows["full"]["ddp_allreduce_bytes_per_step"]
        for row in rows.values():
            row["over_full"] = row["ddp_allreduce_bytes_per_step"] / full
        out[name] = rows
    return out


def check_subspace_count(subspace_dim: int) -> bool:
    """The subspace row's formula equals what apply_strategy reports, on MiniLM (meta device)."""
    from loralab.models import head_names
    from loralab.strategies import StrategyConfig, apply_strategy
    from loralab.strategies.subspace import SubspaceConfig

    config, cls = next(iter(configurations().values()))
    with torch.device("meta"):
        model = cls.from_config(config)
    heads = head_names(model)
    formula = subspace_dim + sum(p.numel() for n, p in model.named_parameters() if n.split(".")[0] in heads)
    report = apply_strategy(model, StrategyConfig("subspace", subspace=SubspaceConfig(dim=subspace_dim,
                                                                                       projection="fastfood")))
    return report.trainable_params == formula


def _rank(rank: int, port: int, settings: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from loralab.models import load_model, load_tokenizer
    from loralab.strategies import StrategyConfig, apply_strategy
    from loralab.tasks.multiple_choice import TASK, encode, read_questions
    from loralab.training import TrainConfig, train
    from loralab.training.distributed import SINGLE, DataParallel

    tokenizer = load_tokenizer(settings["model"])
    items = encode(read_questions(settings["data"], limit=settings["questions"]), tokenizer, settings["max_length"])
    parallel = DataParallel.from_environment()
    times: dict = {f"{s}-{w}": [] for s in TIMED for w in (1, 2)}
    with parallel.joined(torch.device("cpu")):
        for _ in range(settings["rounds"]):
            for strategy in TIMED:
                for world in (1, 2):
                    dist.barrier()
                    if world == 1 and rank != 0:
                        continue  # rank 1 waits at the next barrier while rank 0 trains alone
                    model = load_model(settings["model"], seed=0)
                    apply_strategy(model, StrategyConfig(strategy))
                    config = TrainConfig(lr=1e-5, batch_size=settings["batch"] * 2 // world, max_steps=settings["steps"],
                                         max_length=settings["max_length"], warmup_ratio=0.0, seed=0)
                    result = train(model, items, config, task=TASK, pad_id=tokenizer.pad_token_id, progress=False,
                                   parallel=parallel if world == 2 else SINGLE)
                    times[f"{strategy}-{world}"].append(result.step_seconds[1:])  # the first step warms up
        dist.barrier()
    if rank == 0:
        Path(out).write_text(json.dumps(times))


def timing(args) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = {"model": args.model, "data": args.data, "questions": args.questions, "max_length": args.max_length,
                "batch": args.batch_size, "steps": args.steps, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp, "times.json"))
        torch.multiprocessing.spawn(_rank, args=(port, settings, out), nprocs=2, join=True)
        times = json.loads(Path(out).read_text())
    result = {}
    for strategy in TIMED:
        one = common.median([t for run in times[f"{strategy}-1"] for t in run])
        two = common.median([t for run in times[f"{strategy}-2"] for t in run])
        result[strategy] = {"one_process_steps_per_s": 1 / one, "two_processes_steps_per_s": 1 / two,
                            "two_over_one": one / two, "steps_timed_each": sum(len(r) for r in times[f"{strategy}-1"])}
    return result


def main(argv=None) -> dict:
    p = common.parser(__doc__.splitlines()[0], "distributed")
    p.set_defaults(batch_size=4, max_length=128)
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per timed run (the first is not counted)")
    p.add_argument("--questions", type=int, default=64)
    p.add_argument("--subspace-dim", type=int, default=10_000)
    p.add_argument("--no-timing", action="store_true", help="only the byte counts")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    record = {"machine": common.machine(torch.device("cpu")),
              "settings": {"model": args.model, "per_process_batch": args.batch_size, "global_batch": 2 * args.batch_size,
                           "max_length": args.max_length, "steps_per_run": args.steps, "rounds": args.rounds,
                           "threads_per_process": 1, "subspace_dim": args.subspace_dim}}
    if not args.no_timing:
        record["steps_per_second"] = timing(args)
    record["bytes_per_step"] = traffic(args.subspace_dim)
    record["subspace_count_checked_on_minilm"] = check_subspace_count(args.subspace_dim)
    record["seconds"] = round(time.time() - start, 1)
    common.write(args.name, record, markdown(record), args.no_write)
    return record


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def markdown(record: dict) -> str:
    lines = ["# Data parallel: steps per second and bytes on the network", "",
             "Written by `benchmarks/distributed.py`.", "", "## Machine", "", common.machine_lines(record["machine"]), ""]
    if "steps_per_second" in record:
        s = record["settings"]
        lines += ["## Steps per second, 1 process x batch "
                  f"{s['global_batch']} vs 2 gloo processes x batch {s['per_process_batch']} ({s['model']}, "
                  f"{s['max_length']} tokens, 1 thread each)", "",
                  "The same global batch, so the same optimizer steps; median step time over "
                  f"{s['rounds']} interleaved rounds. The CPU has 2 cores shared with other jobs (load average above): "
                  "two processes compete with them, and with each other, for the same cores.", "",
                  common.table(["strategy", "1 process steps/s", "2 processes steps/s", "2 over 1", "steps timed each"],
                               [[k, v["one_process_steps_per_s"], v["two_processes_steps_per_s"], v["two_over_one"],
                                 v["steps_timed_each"]] for k, v in record["steps_per_second"].items()]), ""]
    lines += ["## Bytes per optimizer step, computed from parameter counts (not run)", "",
              "DDP all-reduces the fp32 gradient of what trains once per step (gradient accumulation: once per "
              "step, not per micro-batch). FSDP2 reduce-scatters the same gradient and all-gathers every sharded "
              "weight twice per micro-batch (forward and backward), frozen or not. Subspace: theta's d = "
              f"{record['settings']['subspace_dim']:,} numbers plus the head.", ""]
    for name, rows in record["bytes_per_step"].items():
        lines += [f"### {name}", "",
                  common.table(["strategy", "trained params", "DDP all-reduce / step", "share of full",
                                "FSDP2 all-gather / micro-batch"],
                               [[k, f"{v['trained_params']:,}", _size(v["ddp_allreduce_bytes_per_step"]),
                                 f"{v['over_full']:.2e}", "refused" if v["fsdp_gather_bytes_per_micro_batch"] is None
                                 else _size(v["fsdp_gather_bytes_per_micro_batch"])]
                                for k, v in rows.items()]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
