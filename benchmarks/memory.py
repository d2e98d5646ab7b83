"""Peak memory of a training step per strategy, each in a fresh process.

The RSS high-water mark belongs to a whole process, so every variant runs in its own subprocess:
load the model, apply the strategy, reset the mark (`loralab.training.PeakMemory`: /proc/self/clear_refs
"5" on Linux; max_memory_allocated on CUDA), take a few steps on the same batches, read the mark.
Two figures per variant: the peak, and the peak minus the memory held before the first step
(what training itself adds: activations, gradients, optimizer state).

QLoRA and gradient checkpointing (`--variants lora,qlora,lora-ckpt,qlora-ckpt`): `qlora` is LoRA on
an NF4 base with double quantization (benchmarks/common.QUANTIZE); each variant also reports the
bytes its weights take (every parameter and buffer, and the quantized layers' codes and scales
against the float bytes they replace), its losses (checkpointing must not change them: `lora-ckpt`
against `lora`, bit for bit) and its median step time (fresh processes, not interleaved: the
interleaved step-time ratios are benchmarks/training.py's).

    python benchmarks/memory.py
    python benchmarks/memory.py --model mpnet --max-length 128 --variants full,lora,qlora,lora-ckpt,qlora-ckpt --name memory-mpnet
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
            ("lora-dropout0.1", "lora", 0.1), ("peft-lora", "peft", 0.0),
            ("qlora", "qlora", 0.0), ("lora-ckpt", "lora-ckpt", 0.0), ("qlora-ckpt", "qlora-ckpt", 0.0),
            ("full-ckpt", "full-ckpt", 0.0)]
DEFAULT = "full,attention,qv,lora,lora-dropout0.1,peft-lora"


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
    float_bytes = _bytes(base)
    torch.manual_seed(args.seed)
    model = common.build(base, how, dropout)
    runner = Runner(model, TrainConfig(batch_size=args.batch_size, seed=args.seed), device, packed=how != "peft",
                    precision=args.precision)
    del base
    _trim()  # the copied-from base and replaced float weights: freed, and handed back to the OS
    groups = common.groups(items, args)
    before = _current_mb(device)
    steps = []
    with PeakMemory(device) as peak:
        for group in groups * args.rounds:
            steps.append(runner.step(group, tokenizer.pad_token_id))
    return {"peak_mb": peak.peak_mb, "before_mb": before, "added_mb": peak.peak_mb - before,
            "trainable_params": runner.trainable, "losses": [s["loss"] for s in steps],
            "step_seconds": common.median([s["step"] for s in steps[1:] or steps]),
            "weight_bytes": _bytes(model), "float_weight_bytes": float_bytes, **_quantized(model)}


def _trim() -> None:
    from loralab.heap import release_heap

    release_heap(collect=True)


def _bytes(model: torch.nn.Module) -> int:
    """Bytes of every parameter and buffer, and of the codes, scales and maps of quantized layers."""
    from loralab.models.quantize import is_quantized, stored_bytes

    quantized = [m for m in model.modules() if is_quantized(m)]
    inside = {id(t) for m in quantized for t in m.parameters()}
    plain = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())
                if id(t) not in inside)
    return plain + sum(stored_bytes(m) + (m.bias.numel() * m.bias.element_size() if m.bias is not None else 0)
                       for m in quantized)


def _quantized(model: torch.nn.Module) -> dict:
    """The quantized layers' bytes against the float32 bytes of the weights they hold."""
    from loralab.models.quantize import is_quantized, stored_bytes

    layers = [m for m in model.modules() if is_quantized(m)]
    if not layers:
        return {}
    stored = sum(stored_bytes(m) for m in layers)
    floats = sum(m.in_features * m.out_features * 4 for m in layers)
    return {"quantized_layers": len(layers), "quantized_layer_bytes": stored, "quantized_layer_float_bytes": floats,
            "quantized_over_float": stored / floats}


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "memory")
    p.set_defaults(batches=2, rounds=1)
    p.add_argument("--child", help=argparse_hidden())
    p.add_argument("--variants", default=DEFAULT, help="comma list of variants, each in its own process "
                   f"(from {', '.join(v[0] for v in VARIANTS)})")
    args = p.parse_args(argv)
    if args.child:
        how, dropout = args.child.split(":")
        print(json.dumps(child(args, how, float(dropout))))
        return None
    device = common.setup(args)
    forwarded = [a for a in (sys.argv[1:] if argv is None else argv)]
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(chosen) - {v[0] for v in VARIANTS}
    if unknown:
        p.error(f"unknown variants {', '.join(sorted(unknown))}")
    results = {}
    table = {label: (how, dropout) for label, how, dropout in VARIANTS}
    for label in chosen:  # in the order asked
        how, dropout = table[label]
        if how == "peft" and not _has("peft"):
            continue
        out = subprocess.run([sys.executable, __file__, *forwarded, "--child", f"{how}:{dropout}"],
                             capture_output=True, text=True, check=True)
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label}: {results[label]}", file=sys.stderr)
    reference = "full" if "full" in results else next(iter(results))
    for r in results.values():
        r["peak_over_full"] = r["peak_mb"] / results[reference]["peak_mb"]
        r["added_over_full"] = r["added_mb"] / results[reference]["added_mb"]
    ratios = {f"{label}_{what}_over_{ref}": results[label][f"{what}_mb"] / results[ref][f"{what}_mb"]
              for label, ref in (("lora", "full"), ("qlora", "lora"), ("lora-ckpt", "lora"), ("qlora-ckpt", "lora"),
                                 ("qlora-ckpt", "full"), ("full-ckpt", "full"))
              if label in results and ref in results for what in ("peak", "added")}
    for label in ("qlora", "qlora-ckpt"):
        if label in results:
            ratios[f"{label}_quantized_layer_bytes_over_float"] = results[label]["quantized_over_float"]
            ratios[f"{label}_weight_bytes_over_float"] = results[label]["weight_bytes"] / results[label]["float_weight_bytes"]
    for label, ref in (("lora-ckpt", "lora"), ("qlora-ckpt", "qlora"), ("full-ckpt", "full")):
        if label in results and ref in results:
            ratios[f"{label}_losses_equal_{ref}"] = results[label]["losses"] == results[ref]["losses"]
            ratios[f"{label}_step_seconds_over_{ref}"] = results[label]["step_seconds"] / results[ref]["step_seconds"]
    if "qlora" in results and "lora" in results:
        ratios["qlora_step_seconds_over_lora"] = results["qlora"]["step_seconds"] / results["lora"]["step_seconds"]
    kind = "max allocated (CUDA)" if device.type == "cuda" else "peak RSS"
    record = {"benchmark": "memory", "command": "python benchmarks/memory.py " + " ".join(forwarded),
              "machine": common.machine(device), "measure": kind, "model": args.model, "batch_size": args.batch_size,
              "max_length": args.max_length, "steps": args.batches * args.rounds, "quantize": common.QUANTIZE,
              "precision": args.precision,
              "ratios": ratios, "variants": results}
    rows = [[k, r["trainable_params"], r["peak_mb"], r["peak_over_full"], r["added_mb"], r["added_over_full"],
             r["weight_bytes"] / 2**20, r["step_seconds"]] for k, r in results.items()]
    markdown = "\n\n".join([
        f"# Peak memory of training per strategy ({args.model}, batch {args.batch_size} questions)",
        f"`{record['command']}`",
        "## Machine\n" + common.machine_lines(record["machine"]),
        f"Each variant in a fresh process; {kind} over {record['steps']} steps on the same batches "
        f"(max length {args.max_length}). 'added' = peak minus the memory held before the first step (activations, "
        f"gradients, optimizer state); ratios against {reference}. Weight MB: every parameter and buffer (quantized "
        "layers: codes, scales and maps). Step s: median of the steps after the first, in that process alone.",
        common.table(["variant", "trainable", "peak MB", f"peak / {reference}", "added MB", f"added / {reference}",
                      "weight MB", "step s"], rows),
        "## Ratios\n" + common.table(["ratio", "value"], [[k, v] for k, v in ratios.items()]),
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
