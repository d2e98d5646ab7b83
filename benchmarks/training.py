"""Training step time, tokens/s and where the time goes, for each strategy and for peft's LoRA.

Every variant gets its own model copy and optimizer and runs the same batches (fixed seed). Steps
are interleaved: for each batch, every variant takes one step, in a rotating order, so the noise of
a shared machine hits them all alike. Ratios are medians of per-batch ratios (same tokens in
numerator and denominator).

The step is loralab's: collate (dynamic padding), forward with `choice_logits`, cross-entropy,
backward, `loss.item()`, global-norm clipping, AdamW from `loralab.training.optimizer.adamw`, zero_grad.
loralab's variants use its packed forward (real tokens only, `loralab.models.packed`), as `loralab.training`
does; peft's LoRA runs through the same step with the model's own padded forward, which is what
peft gives. `lora-padded` (loralab's LoRA layer in the padded forward) against peft isolates the
adapter layer. `--grouped` times length-grouped batches (little padding) instead of random ones.

Any variant with "-bf16" appended runs the same step under bf16 mixed precision
(`loralab.training.precision`: autocast, fp32 master weights); `--precision bf16` runs every variant
so. Each variant's model FLOPs per step are counted from the shapes (`flops.py`), and the rate of
plain matrix multiplies of the step's own linear shapes is timed once per batch inside the same
interleaved loop, in each precision in use; MFU = (FLOPs / step seconds) / that rate.

A second comparison times whole passes of `loralab.training` over the same questions: loralab's LoRA
with its default length-grouped batches against peft's LoRA batched the way transformers does by
default (random batches padded to their longest sequence). That ratio is what a user feels.

    python benchmarks/training.py                 # MiniLM, CPU (CUDA when present)
    python benchmarks/training.py --threads 1     # steadier on a shared CPU
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import flops  # noqa: E402

from loralab.tasks.multiple_choice import TASK as MC  # noqa: E402
from loralab.tasks.multiple_choice import choice_logits, collate  # noqa: E402
from loralab.training import TrainConfig, train  # noqa: E402
from loralab.training.optimizer import adamw  # noqa: E402
from loralab.training.precision import autocast  # noqa: E402

# (label, how the model is prepared, LoRA dropout, packed forward). loralab's variants run as `loralab.training` runs
# them (packed: real tokens only); "lora-padded" is loralab's LoRA through the model's own padded forward, which is
# the forward peft's LoRA gets, so lora-padded / peft-lora isolates the adapter layer itself.
VARIANTS = [
    ("full", "full", 0.0, True),
    ("attention", "attention", 0.0, True),
    ("qv", "qv", 0.0, True),
    ("lora", "lora", 0.0, True),
    ("lora-padded", "lora", 0.0, False),
    ("lora-dropout0.1", "lora", 0.1, True),
    ("peft-lora", "peft", 0.0, False),
    ("peft-lora-dropout0.1", "peft", 0.1, False),
    ("subspace-fastfood-10000", "subspace", 0.0, True),
    ("qlora", "qlora", 0.0, True),  # loralab's LoRA on an NF4 base (common.QUANTIZE): the cost of dequantizing
    ("lora-ckpt", "lora-ckpt", 0.0, True),  # gradient checkpointing: the cost of the recomputed forward
    ("qlora-ckpt", "qlora-ckpt", 0.0, True),
    ("subspace-fastfood-10000-original", "subspace-reference", 0.0, True),  # the transform before it was blocked
]
DEFAULT = [label for label, how, *_ in VARIANTS if not label.endswith("-original") and not how.startswith("qlora")
           and not how.endswith("-ckpt")] + ["full-bf16", "lora-bf16"]
PHASES = ("data", "forward", "backward", "optimizer")


class Runner:
    """One variant: its model, its optimizer and the seconds of each phase of each step."""

    def __init__(self, model, config: TrainConfig, device, packed: bool = True, precision: str = "fp32"):
        self.model = model.to(device).train()
        self.packed, self.precision = packed, precision
        self.optimizer = adamw(model, config.lr, config.weight_decay, fused=precision == "bf16")  # as loralab.training
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.config, self.device = config, device
        self.trainable = sum(p.numel() for p in self.params)
        self.steps: list[dict] = []

    def step(self, group, pad_id: int) -> dict:
        t0 = common.sync(self.device)
        batch = {k: v.to(self.device) for k, v in collate(group, pad_id).items()}
        t1 = common.sync(self.device)
        with autocast(self.precision, self.device):
            loss = torch.nn.functional.cross_entropy(choice_logits(self.model, batch, self.packed), batch["labels"])
        t2 = common.sync(self.device)
        loss.backward()
        value = loss.item()
        t3 = common.sync(self.device)
        torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        t4 = common.sync(self.device)
        lengths = batch["attention_mask"].reshape(-1, batch["attention_mask"].shape[-1]).sum(1).tolist()
        return {"data": t1 - t0, "forward": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3,
                "step": t4 - t0, "tokens": sum(lengths), "padded": batch["attention_mask"].numel(),
                "flops": flops.step_flops(self.model, lengths)["total"], "loss": value}


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "training")
    p.add_argument("--epoch-questions", type=int, default=96, help="questions per whole-pass comparison (0: skip)")
    p.add_argument("--grouped", action="store_true",
                   help="length-grouped batches (as loralab.training makes them) instead of random ones")
    p.add_argument("--variants", default=",".join(DEFAULT),
                   help="comma list of variants to time (full is always included); append -bf16 for bf16 compute; qlora, lora-ckpt and "
                        "qlora-ckpt only when named")
    args = p.parse_args(argv)
    wanted = ["full", *(v.strip() for v in args.variants.split(",") if v.strip() and v.strip() != "full")]
    known = {v[0]: v for v in VARIANTS}
    unknown = [v for v in wanted if v.removesuffix("-bf16") not in known]
    if unknown:
        p.error(f"unknown variants {', '.join(sorted(unknown))}; choose from {', '.join(known)} (each with -bf16)")
    device = common.setup(args)
    base, tokenizer, items = common.load(args)
    groups = common.groups(items, args, grouped=args.grouped)
    config = TrainConfig(batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    runners = {}
    for label in wanted:
        _, how, dropout, packed = known[label.removesuffix("-bf16")]
        if how == "peft" and not _has_peft():
            continue
        precision = "bf16" if label.endswith("-bf16") or args.precision == "bf16" else "fp32"
        torch.manual_seed(args.seed)
        runners[label] = Runner(common.build(base, how, dropout), config, device, packed, precision)
    labels = list(runners)
    precisions = sorted({r.precision for r in runners.values()})
    shapes = flops.linear_shapes(runners["full"].model)
    paired = []  # per batch: label -> step record
    for round_ in range(args.rounds):
        for b, group in enumerate(groups):
            shift = (round_ * len(groups) + b) % len(labels)
            record = {}
            for label in labels[shift:] + labels[:shift]:
                torch.manual_seed(args.seed + b)  # same dropout masks across variants of a batch
                record[label] = runners[label].step(group, tokenizer.pad_token_id)
            tokens = record["full"]["tokens"]
            record["gemm"] = {p: flops.gemm_rate(shapes, tokens, _DTYPES[p], device) for p in precisions}
            if round_ or b:  # the very first batch warms caches and allocates optimizer state
                paired.append(record)
            print(f"round {round_ + 1} batch {b + 1}: " + " ".join(f"{k}={record[k]['step']:.3f}s" for k in labels),
                  file=sys.stderr)

    results = {}
    for label in labels:
        steps = [r[label] for r in paired]
        results[label] = {
            "trainable_params": runners[label].trainable,
            "step_seconds": common.median([s["step"] for s in steps]),
            "tokens_per_second": common.median([s["tokens"] / s["step"] for s in steps]),
            "step_over_full": common.median([r[label]["step"] / r["full"]["step"] for r in paired]),
            "tokens_per_second_over_full": common.median(
                [(r["full"]["step"] / r[label]["step"]) for r in paired]),
            "phases_seconds": {p: common.median([s[p] for s in steps]) for p in PHASES},
            "precision": runners[label].precision,
            "model_gflop_per_step": common.median([s["flops"] for s in steps]) / 1e9,
            "gflop_per_second": common.median([s["flops"] / s["step"] for s in steps]) / 1e9,
            "mfu": common.median([r[label]["flops"] / r[label]["step"] / r["gemm"][runners[label].precision]
                                  for r in paired]),
        }
    gemm = {p: common.median([r["gemm"][p] for r in paired]) / 1e9 for p in precisions}
    ratios = {f"{label}_over_full": results[label]["step_over_full"]
              for label in ("lora", "subspace-fastfood-10000", "subspace-fastfood-10000-original") if label in results}
    for label in labels:  # bf16 against the same strategy in fp32, batch by batch
        fp32 = label.removesuffix("-bf16")
        if label.endswith("-bf16") and fp32 in results:
            ratios[f"{fp32}_bf16_over_fp32"] = common.median([r[label]["step"] / r[fp32]["step"] for r in paired])
    if "peft-lora" in results and "lora" in results:
        ratios["loralab_lora_over_peft_lora"] = common.median([r["lora"]["step"] / r["peft-lora"]["step"] for r in paired])
    if "peft-lora" in results and "lora-padded" in results:
        ratios["loralab_lora_padded_over_peft_lora"] = common.median(
            [r["lora-padded"]["step"] / r["peft-lora"]["step"] for r in paired])
    if "peft-lora-dropout0.1" in results and "lora-dropout0.1" in results:
        ratios["loralab_lora_dropout0.1_over_peft_lora_dropout0.1"] = common.median(
            [r["lora-dropout0.1"]["step"] / r["peft-lora-dropout0.1"]["step"] for r in paired])
    for label in ("qlora", "lora-ckpt", "qlora-ckpt"):
        if label in results and "lora" in results:
            ratios[f"{label}_over_lora"] = common.median([r[label]["step"] / r["lora"]["step"] for r in paired])
    if "peft-lora" in results and "lora" in results and args.epoch_questions:
        epoch = epochs(base, tokenizer, args, device)
        ratios["loralab_lora_grouped_over_peft_lora_random_epoch"] = epoch["ratio"]
    else:
        epoch = None
    record = {
        "benchmark": "training", "command": "python benchmarks/training.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": common.machine(device), "model": args.model, "data": Path(args.data).name,
        "batch_size": args.batch_size, "batching": "length-grouped" if args.grouped else "random",
        "batches": len(groups), "rounds": args.rounds, "paired_steps": len(paired),
        "mean_tokens_per_batch": sum(r["full"]["tokens"] for r in paired) / max(1, len(paired)),
        "real_token_share": sum(r["full"]["tokens"] for r in paired) / max(1, sum(r["full"]["padded"] for r in paired)),
        "lora": {**common.LORA, "targets": list(common.LORA["targets"])}, "subspace": common.SUBSPACE,
        "gemm_gflop_per_second": gemm,
        "gemm_shapes": {"linear_in_out": shapes, "rows": "the batch's real tokens (full's)",
                        "products": "forward, input gradient, weight gradient"},
        "ratios": ratios, "variants": results, "epoch": epoch,
    }
    rows = [[label, r["trainable_params"], r["step_seconds"], r["step_over_full"], r["tokens_per_second"],
             *(r["phases_seconds"][p] for p in PHASES)] for label, r in results.items()]
    mfu_rows = [[label, r["precision"], r["model_gflop_per_step"], r["gflop_per_second"], gemm[r["precision"]],
                 r["mfu"]] for label, r in results.items()]
    markdown = "\n\n".join([
        f"# Training step per strategy ({args.model}, batch {args.batch_size} questions)",
        f"`{record['command']}`",
        "## Machine\n" + common.machine_lines(record["machine"]),
        f"{len(paired)} interleaved steps per variant over {len(groups)} fixed {record['batching']} batches "
        f"(about {record['mean_tokens_per_batch']:.0f} real tokens each, {record['real_token_share']:.0%} of the padded "
        "layout); medians. LoRA: q,v, r=8, alpha=32. loralab's variants run packed (real tokens only) as `loralab.training`"
        " does, except lora-padded; peft's run the model's own padded forward."
        + (f" Subspace: {common.SUBSPACE['projection']}, d = {common.SUBSPACE['dim']:,}, every weight (head trained "
           "directly)." if "subspace-fastfood-10000" in results else ""),
        "## Ratios (median of per-batch ratios)\n" + common.table(["ratio", "value"], [[k, v] for k, v in ratios.items()]),
        "## Per variant (seconds; phases are medians: data = collate, optimizer = clip + AdamW + zero_grad)\n"
        + common.table(["variant", "trainable", "step s", "step / full", "tokens/s", *PHASES], rows),
        "## Utilisation (model FLOPs from the shapes, `benchmarks/flops.py`; GEMM rate of the step's linear shapes, "
        "timed per batch in the same loop)\n"
        + common.table(["variant", "precision", "model GFLOP / step", "GFLOP/s", "GEMM GFLOP/s", "MFU"], mfu_rows),
    ])
    if epoch:
        markdown += "\n\n## Whole passes of `loralab.training` over the same questions\n" + (
            f"{epoch['questions']} questions, {epoch['rounds']} interleaved passes each; median seconds per pass.\n\n"
            + common.table(["variant", "batching", "seconds / pass", "padded tokens / pass"],
                           [[k, v["batching"], v["seconds"], v["padded_tokens"]] for k, v in epoch["variants"].items()])
            + f"\n\nloralab / peft: {epoch['ratio']:.3f}")
    markdown += "\n"
    common.write(args.name, record, markdown, args.no_write, args.results)
    return record


def epochs(base, tokenizer, args, device) -> dict:
    """Interleaved whole passes of `loralab.training`: loralab LoRA (grouped) against peft LoRA (random)."""
    from loralab.training.batching import batches

    items = common.load_items(args, args.epoch_questions)
    setups = {"loralab-lora": ("lora", True), "peft-lora": ("peft", False)}
    models = {k: common.build(base, how).to(device) for k, (how, _) in setups.items()}
    seconds = {k: [] for k in setups}
    for round_ in range(args.rounds):
        for label, (_, grouped) in (list(setups.items())[::-1] if round_ % 2 else setups.items()):
            config = TrainConfig(batch_size=args.batch_size, max_length=args.max_length, seed=args.seed + round_,
                                 group_by_length=grouped, packed=label != "peft-lora")
            seconds[label].append(train(models[label], items, config, task=MC, pad_id=tokenizer.pad_token_id,
                                        device=device, progress=False).train_seconds)
            print(f"pass {round_ + 1} {label}: {seconds[label][-1]:.2f}s", file=sys.stderr)
    variants = {}
    for label, (_, grouped) in setups.items():
        pad = functools.partial(collate, pad_id=tokenizer.pad_token_id)
        padded = sum(b["input_ids"].numel() for b in batches(items, args.batch_size, pad, shuffle=True,
                                                             generator=torch.Generator().manual_seed(args.seed),
                                                             group_by_length=grouped))
        variants[label] = {"batching": "length-grouped" if grouped else "random, padded to longest",
                           "seconds": common.median(seconds[label]), "padded_tokens": padded, "passes": seconds[label]}
    ratio = common.median([a / b for a, b in zip(seconds["loralab-lora"], seconds["peft-lora"])])
    return {"questions": len(items), "rounds": args.rounds, "variants": variants, "ratio": ratio}


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _has_peft() -> bool:
    try:
        import peft  # noqa: F401
    except ImportError:
        print("peft is not installed: the loralab/peft comparison is skipped", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    main()
