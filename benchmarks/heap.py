"""What handing freed heap back after every step saves and costs on CPU (`loralab.heap.release_heap`).

A step frees its activations, and glibc keeps the freed heap to reuse; batches of a new length
allocate tensors of new shapes that do not fit the holes, so the heap grows over a run. loralab's
training loop calls `malloc_trim` after every optimizer step on CPU. Two measurements:

- Memory: the real `loralab train` in fresh processes per variant, never trimming
  (`--trim-heap-every 0`) and trimming after every N steps for each N of `--every`; the whole run's
  peak RSS from each `run.json`, and whether the losses are bit-for-bit equal (they must be: trimming
  changes where memory lives, not what is computed).
- Time: one process, fixed length-grouped batches (`common.groups`), each batch stepped twice in a
  row, once right after a trim (the trim call counted in the step) and once without, the order
  alternating from batch to batch; the median of the per-batch ratios trimmed / untrimmed. That is
  the cost of one trim; trimming every N steps pays it once per N steps.

    python benchmarks/heap.py --threads 1 --precision bf16
    python benchmarks/heap.py --threads 1 --model mpnet --variants qlora-ckpt --train-steps 100 --name heap-mpnet
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# Each variant as `loralab train` options; the time measurement builds the same with common.build.
TRAIN_OPTIONS = {
    "lora": ["--strategy", "lora", "--lora-r", "8", "--lora-alpha", "32", "--lora-targets", "query,value"],
    "full": ["--strategy", "full", "--lr", "5e-5"],
    "qlora-ckpt": ["--strategy", "lora", "--lora-r", "8", "--lora-alpha", "32", "--lora-targets", "query,value",
                   "--quantize", "nf4", "--double-quant", "--gradient-checkpointing"],
}


def train_child(args, variant: str, every: int) -> dict:
    """One whole `loralab train` run in this (fresh) process, trimming after every `every` steps (0: never)."""
    from loralab.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        code = main(["train", "--model", args.model, "--train", args.data, "--train-limit", str(args.train_limit),
                     "--max-length", str(args.max_length), "--batch-size", str(args.batch_size),
                     "--max-steps", str(args.train_steps), "--seed", str(args.seed), "--precision", args.precision,
                     "--threads", str(args.threads or 1), "--quiet", "--out", str(out), "--trim-heap-every", str(every),
                     *TRAIN_OPTIONS[variant]])
        if code:
            raise SystemExit(f"loralab train exited {code}")
        run = json.loads((out / "run.json").read_text())
    return {"peak_mb": run["peak_memory_mb"], "losses": run["loss"], "median_step_seconds": run["median_step_seconds"],
            "steps": run["steps"]}


def timed(args, variant: str, device) -> dict:
    """Per batch: the step right after a trim (trim included) over the step without one."""
    from training import Runner

    from loralab.training import TrainConfig
    from loralab.heap import release_heap

    base, tokenizer, items = common.load(args)
    model = common.build(base, variant)
    del base
    runner = Runner(model, TrainConfig(batch_size=args.batch_size, seed=args.seed), device, precision=args.precision)
    groups = common.groups(items, args, grouped=True)
    runner.step(groups[0], tokenizer.pad_token_id)  # warm-up
    ratios, trims = [], []

    def with_trim(group):
        t0 = time.perf_counter()
        release_heap()
        trims.append(time.perf_counter() - t0)
        return trims[-1] + runner.step(group, tokenizer.pad_token_id)["step"]

    for _ in range(args.rounds):
        for j, group in enumerate(groups):
            if j % 2:
                plain = runner.step(group, tokenizer.pad_token_id)["step"]
                trimmed = with_trim(group)
            else:
                trimmed = with_trim(group)
                plain = runner.step(group, tokenizer.pad_token_id)["step"]
            ratios.append(trimmed / plain)
    return {"trimmed_over_plain": common.median(ratios), "pairs": len(ratios), "ratios": ratios,
            "trim_call_seconds": common.median(trims)}


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "heap")
    p.set_defaults(max_length=128, batches=8, rounds=2)
    p.add_argument("--variants", default="lora,full", help=f"comma list from {', '.join(TRAIN_OPTIONS)}")
    p.add_argument("--train-steps", type=int, default=250, help="steps of each whole `loralab train` run")
    p.add_argument("--train-limit", type=int, default=2000, help="training questions of each whole run")
    p.add_argument("--every", default="1,4", help="comma list of trimming cadences (steps) to measure the peak at")
    p.add_argument("--child", help=argparse_hidden())
    args = p.parse_args(argv)
    device = common.setup(args)
    if device.type != "cpu":
        p.error("the heap is trimmed on CPU only; run with --device cpu")
    if args.child:
        variant, every = args.child.split(":")
        print(json.dumps(train_child(args, variant, int(every))))
        return None
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    cadences = [int(n) for n in args.every.split(",") if n.strip()]
    if not cadences or min(cadences) < 1:
        p.error(f"--every {args.every}: expected a comma list of step counts >= 1")
    unknown = set(chosen) - set(TRAIN_OPTIONS)
    if unknown:
        p.error(f"unknown variants {', '.join(sorted(unknown))}")
    forwarded = list(sys.argv[1:] if argv is None else argv)
    results = {}
    for variant in chosen:
        runs = {}
        for every in [0, *cadences]:
            out = subprocess.run([sys.executable, __file__, *forwarded, "--child", f"{variant}:{every}"],
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{variant} trimming every {every}: child failed\n{out.stderr[-3000:]}")
            runs[every] = json.loads(out.stdout.strip().splitlines()[-1])
        time_figures = timed(args, variant, device)
        results[variant] = {
            "peak_mb_untrimmed": runs[0]["peak_mb"],
            **{f"peak_mb_every_{n}": runs[n]["peak_mb"] for n in cadences},
            **{f"peak_every_{n}_over_untrimmed": runs[n]["peak_mb"] / runs[0]["peak_mb"] for n in cadences},
            "losses_equal": all(runs[n]["losses"] == runs[0]["losses"] for n in cadences),
            "train_steps": runs[0]["steps"], **time_figures,
        }
        print(f"{variant}: {results[variant]}", file=sys.stderr)
    record = {"benchmark": "heap", "command": "python benchmarks/heap.py " + " ".join(forwarded),
              "machine": common.machine(device), "model": args.model, "batch_size": args.batch_size,
              "max_length": args.max_length, "precision": args.precision, "variants": results}
    rows = [[v, r["train_steps"], r["peak_mb_untrimmed"],
             *[f"{r[f'peak_mb_every_{n}']:,.0f} ({r[f'peak_every_{n}_over_untrimmed']:.2f})" for n in cadences],
             r["losses_equal"], r["trimmed_over_plain"], r["pairs"], r["trim_call_seconds"] * 1000]
            for v, r in results.items()]
    markdown = "\n\n".join([
        f"# Returning freed heap after every step ({args.model}, batch {args.batch_size}, max length {args.max_length})",
        f"`{record['command']}`",
        "## Machine\n" + common.machine_lines(record["machine"]),
        "Peak MB: the whole `loralab train` run's peak RSS, each in a fresh process, never trimmed and "
        "trimmed after every N steps (in brackets: over the untrimmed peak). Step ratio: the step right after a "
        "trim (the trim call included) over the same batch's step without one, interleaved in one process; "
        "median over batches (trimming every N steps pays it once per N steps).",
        common.table(["variant", "steps", "peak MB untrimmed", *[f"peak MB every {n}" for n in cadences],
                      "losses equal", "step ratio after a trim", "pairs", "trim call ms"], rows),
    ]) + "\n"
    common.write(args.name, record, markdown, args.no_write, args.results)
    return record


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
