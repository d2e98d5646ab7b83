"""Peak memory of a training step per strategy, each in a fresh process.

The RSS high-water mark belongs to a whole process, so every variant runs in its own subprocess:
load the model, apply the strategy, reset the mark (`loralab.training.PeakMemory`: /proc/self/clear_refs
"5" on Linux; max_memory_allocated on CUDA), take a few steps on the same batches, read the mark.
Two figures per variant: the peak, and the peak minus the memory held before the first step
(what training itself adds: activations, gradients, optimizer state).

    python benchmarks/memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

VARIANTS = [("full", "full", 0.0), ("attention", "attention", 0.0), ("qv", "qv", 0.0), ("lora", "lora", 0.0),
            ("lora-dropout0.1", "lora", 0.1), ("peft-lora", "peft", 0.0)]


def _current_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def child(args, how: str, dropout: float) -> dict:
    from training import Runner

    from loralab.training import PeakMemory, TrainConfig

    device = common.setup(args)
    base, tokenizer, items = common.load(args)
    torch.manual_seed(args.seed)
    runner = Runner(common.build(base, how, dropout), TrainConfig(batch_size=args.batch_size, seed=args.seed), device,
                    packed=how != "peft", precision=args.precision)
    del base
    groups = common.groups(items, args)
    before = _current_mb(device)
    with PeakMemory(device) as peak:
        for group in groups * args.rounds:
            runner.step(group, tokenizer.pad_token_id)
    return {"peak_mb": peak.peak_mb, "before_mb": before, "added_mb": peak.peak_mb - before,
            "trainable_params": runner.trainable}


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "memory")
    p.set_defaults(batches=2, rounds=1)
    p.add_argument("--child", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.child:
        how, dropout = args.child.split(":")
        print(json.dumps(child(args, how, float(dropout))))
        return None
    device = common.setup(args)
    forwarded = [a for a in (sys.argv[1:] if argv is None else argv)]
    results = {}
    for label, how, dropout in VARIANTS:
        if how == "peft" and not _has("peft"):
            continue
        out = subprocess.run([sys.executable, __file__, *forwarded, "--child", f"{how}:{dropout}"],
                             capture_output=True, text=True, check=True)
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label}: {results[label]}", file=sys.stderr)
    for r in results.values():
        r["peak_over_full"] = r["peak_mb"] / results["full"]["peak_mb"]
        r["added_over_full"] = r["added_mb"] / results["full"]["added_mb"]
    kind = "max allocated (CUDA)" if device.type == "cuda" else "peak RSS"
    record = {"benchmark": "memory", "command": "python benchmarks/memory.py " + " ".join(forwarded),
              "machine": common.machine(device), "measure": kind, "model": args.model, "batch_size": args.batch_size,
              "precision": args.precision,
              "steps": args.batches * args.rounds,
              "ratios": {"lora_peak_over_full": results["lora"]["peak_over_full"],
                         "lora_added_over_full": results["lora"]["added_over_full"]},
              "variants": results}
    rows = [[k, r["trainable_params"], r["peak_mb"], r["peak_over_full"], r["added_mb"], r["added_over_full"]]
            for k, r in results.items()]
    markdown = "\n\n".join([
        f"# Peak memory of training per strategy ({args.model}, batch {args.batch_size} questions)",
        f"`{record['command']}`",
        "## Machine\n" + common.machine_lines(record["machine"]),
        f"Each variant in a fresh process; {kind} over {record['steps']} steps on the same batches. "
        "'added' = peak minus the memory held before the first step (activations, gradients, optimizer state).",
        common.table(["variant", "trainable", "peak MB", "peak / full", "added MB", "added / full"], rows),
    ]) + "\n"
    common.write(args.name, record, markdown, args.no_write, args.results)
    return record


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
