"""Step time and peak memory of every method loralab trains, against its LoRA and against peft's.

One process times every method interleaved: for each batch, every method takes one step on its own
model copy, in a rotating order, so a shared machine's noise falls on all alike; a ratio is the
median of per-batch ratios (same batch in numerator and denominator). The step is benchmarks/
training.py's (`Runner`), with the optimizer `loralab.training` builds from the strategy's groups
(LoRA+'s faster B, GaLore's projected matrices). loralab's methods use its packed forward, as its
training does; peft's DoRA and LoRA run the model's padded forward, which is what peft gives, and
`dora-padded` is loralab's DoRA in that same forward (the layer alone against peft's). Peak memory:
each method in a fresh process (benchmarks/memory.py's measure), over a few steps.

    python benchmarks/methods.py --threads 1 --max-length 128 --batches 3 --rounds 2
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from training import Runner  # noqa: E402

from loralab.training import PeakMemory, TrainConfig  # noqa: E402
from loralab.training.optimizer import adamw  # noqa: E402

LORA = dict(r=common.LORA["r"], alpha=common.LORA["alpha"], targets=common.LORA["targets"])
# label: (loralab strategy settings as StrategyConfig keywords, or "peft" settings; packed forward)
METHODS = {
    "lora": ({"strategy": "lora", "lora": {}}, True),
    "dora": ({"strategy": "lora", "lora": {"use_dora": True}}, True),
    "dora-padded": ({"strategy": "lora", "lora": {"use_dora": True}}, False),
    "pissa": ({"strategy": "lora", "lora": {"init": "pissa"}}, True),
    "olora": ({"strategy": "lora", "lora": {"init": "olora"}}, True),
    "lora-plus": ({"strategy": "lora", "lora": {"plus_ratio": 16.0}}, True),
    "vera": ({"strategy": "vera"}, True),
    "ia3": ({"strategy": "ia3"}, True),
    "galore": ({"strategy": "galore"}, True),
    "peft-lora": ({"peft": {}}, False),
    "peft-dora": ({"peft": {"use_dora": True}}, False),
}


def build(base: torch.nn.Module, label: str, config: TrainConfig, device, precision: str) -> Runner:
    """A Runner for `label`: a fresh copy of `base` adapted by the method, its optimizer from the strategy's groups."""
    settings, packed = METHODS[label]
    torch.manual_seed(0)
    if "peft" in settings:
        from peft import LoraConfig as PeftLoraConfig, get_peft_model

        from loralab.models import architecture

        model = copy.deepcopy(base)
        arch = architecture(model)
        model = get_peft_model(model, PeftLoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], modules_to_save=list(arch.head),
                                                     target_modules=[getattr(arch, t) for t in LORA["targets"]],
                                                     **settings["peft"]))
        return Runner(model, config, device, packed, precision)
    from loralab.runs.one_run import learning_rates
    from loralab.strategies import StrategyConfig, apply_strategy
    from loralab.strategies.lora import LoraConfig

    model = copy.deepcopy(base)
    strategy = StrategyConfig(settings["strategy"], **({"lora": LoraConfig(**LORA, **settings["lora"])}
                                                       if "lora" in settings else {}))
    groups = learning_rates(apply_strategy(model, strategy).groups, config)
    runner = Runner(model, config, device, packed, precision)
    runner.optimizer = adamw(model, config.lr, config.weight_decay, groups)
    runner.params = [p for g in runner.optimizer.param_groups for p in g["params"]]
    return runner


def child(args, label: str) -> dict:
    """Peak memory of `label` training alone in this process."""
    device = common.setup(args)
    base, tokenizer, items = common.load(args)
    runner = build(base, label, TrainConfig(batch_size=args.batch_size, seed=args.seed), device, args.precision)
    del base
    from loralab.heap import release_heap

    release_heap(collect=True)
    with PeakMemory(device) as peak:
        for group in common.groups(items, args):
            runner.step(group, tokenizer.pad_token_id)
    return {"peak_mb": peak.peak_mb, "trainable_params": runner.trainable}


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "methods")
    p.set_defaults(max_length=128, batches=3, rounds=2)
    p.add_argument("--methods", default=",".join(METHODS), help="comma list from " + ", ".join(METHODS))
    p.add_argument("--memory-batches", type=int, default=2, help="steps per fresh process for peak memory (0: skip)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.batches = args.memory_batches
        print(json.dumps(child(args, args.child)))
        return None
    labels = ["lora", *(m for m in args.methods.split(",") if m and m != "lora")]
    device = common.setup(args)
    base, tokenizer, items = common.load(args)
    groups = common.groups(items, args)
    config = TrainConfig(batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    runners = {label: build(base, label, config, device, args.precision) for label in labels}
    paired = []
    for round_ in range(args.rounds):
        for b, group in enumerate(groups):
            shift = (round_ * len(groups) + b) % len(labels)
            record = {}
            for label in labels[shift:] + labels[:shift]:
                torch.manual_seed(args.seed + b)
                record[label] = runners[label].step(group, tokenizer.pad_token_id)
            if round_ or b:  # the first batch warms caches and allocates optimizer state
                paired.append(record)
            print(f"round {round_ + 1} batch {b + 1}: " + " ".join(f"{k}={record[k]['step']:.3f}s" for k in labels),
                  file=sys.stderr)

    def ratio(a: str, b: str) -> float | None:
        return common.median([r[a]["step"] / r[b]["step"] for r in paired]) if a in labels and b in labels else None

    results = {label: {"trainable_params": runners[label].trainable,
                       "step_seconds": common.median([r[label]["step"] for r in paired]),
                       "step_over_lora": ratio(label, "lora")} for label in labels}
    del runners
    forwarded = list(sys.argv[1:] if argv is None else argv)
    for label in labels if args.memory_batches else ():
        out = subprocess.run([sys.executable, __file__, *forwarded, "--child", label], capture_output=True, text=True,
                             check=True)
        results[label].update(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{label}: {results[label]}", file=sys.stderr)
    ratios = {"loralab_dora_over_loralab_lora": ratio("dora", "lora"),
              "loralab_dora_over_peft_dora": ratio("dora", "peft-dora"),
              "loralab_dora_padded_over_peft_dora": ratio("dora-padded", "peft-dora"),
              "peft_dora_over_peft_lora": ratio("peft-dora", "peft-lora"),
              "loralab_lora_over_peft_lora": ratio("lora", "peft-lora")}
    targets = {"loralab_dora_over_loralab_lora": 1.15, "loralab_dora_over_peft_dora": 0.7}
    record = {"benchmark": "methods", "command": "python benchmarks/methods.py " + " ".join(forwarded),
              "machine": common.machine(device), "model": args.model, "batch_size": args.batch_size,
              "max_length": args.max_length, "timed_steps": len(paired), "lora": {k: list(v) if isinstance(v, tuple)
                                                                                 else v for k, v in LORA.items()},
              "targets": targets, "ratios": ratios, "methods": results}
    rows = [[k, r["trainable_params"], r["step_seconds"], r["step_over_lora"], r.get("peak_mb", "")]
            for k, r in results.items()]
    markdown = "\n\n".join([
        f"# Step time and peak memory per method ({args.model}, batches of {args.batch_size} questions, "
        f"length {args.max_length})",
        f"`{record['command']}`",
        "## Machine\n" + common.machine_lines(record["machine"]),
        f"Step s: median over {len(paired)} interleaved steps (same batches for every method); / lora: median of "
        "per-batch ratios to loralab's LoRA. Peak MB: peak RSS (or CUDA max allocated) of the method alone in a fresh "
        f"process over {args.memory_batches} steps. LoRA: r {LORA['r']}, alpha {LORA['alpha']:g}, q and v; "
        "VeRA, IA3 and GaLore at their defaults.",
        common.table(["method", "trainable", "step s", "/ lora", "peak MB"], rows),
        "## Ratios\n" + common.table(["ratio", "value", "target"],
                                     [[k, v if v is not None else "", f"<= {targets[k]}" if k in targets else ""]
                                      for k, v in ratios.items()]),
    ]) + "\n"
    common.write(args.name, record, markdown, args.no_write, args.results)
    return record


if __name__ == "__main__":
    main()
