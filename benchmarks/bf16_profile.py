"""Where a training step's CPU time goes outside the products: torch.profiler over a few steps, by kind of op.

Each variant runs `benchmarks/training.py`'s step (loralab's packed forward, AdamW from
`loralab.training.optimizer`, bf16 variants under `loralab.training.precision.autocast`) for one warm-up
step and `--steps` profiled ones. Every op's self time goes into one part: the products (mm, addmm, bmm,
baddbmm), casts (copy_, _to_copy: autocast's weight and activation casts, and their gradients cast back,
but also addmm's copy of its bias and the attention layout's reshapes), AdamW (everything inside
`optimizer.step`), layer norm, softmax, GELU, dropout masks, the packed layout's gathers and scatters
(with the embedding lookups), gradient clipping, and the rest (elementwise adds and multiplies, autograd's
own bookkeeping). Shares are of the profiled self time, which the profiler itself inflates for small ops:
read them as where to look, and time a change with `benchmarks/training.py`, interleaved.

    python benchmarks/bf16_profile.py --threads 1 --variants full-bf16,lora-bf16
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import training  # noqa: E402

PARTS = {
    "products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "casts and copies": ("aten::copy_", "aten::_to_copy"),
    "layer norm": ("aten::native_layer_norm", "aten::native_layer_norm_backward"),
    "softmax": ("aten::_softmax", "aten::_softmax_backward_data"),
    "gelu": ("aten::gelu", "aten::gelu_backward"),
    "dropout masks": ("aten::random_", "aten::ge"),
    "layout gathers, embeddings": ("aten::index_copy", "aten::index_select", "aten::cat",
                                   "aten::embedding_dense_backward", "aten::scatter_add_", "aten::index_add_",
                                   "aten::fill_", "aten::zero_"),
    "gradient clipping": ("aten::linalg_vector_norm", "aten::_foreach_norm", "aten::stack", "aten::_foreach_mul_"),
}


def breakdown(prof) -> dict[str, float]:
    """Share of profiled self time per part."""
    events = prof.events()
    steps = [(e.time_range.start, e.time_range.end) for e in events if e.name.startswith("Optimizer.step")]
    part_of = {name: part for part, names in PARTS.items() for name in names}
    seconds = collections.Counter()
    for e in events:
        inside = any(start <= e.time_range.start <= end for start, end in steps)
        part = "adamw" if inside or e.name.startswith("Optimizer.step") else part_of.get(e.name, "other")
        seconds[part] += e.self_cpu_time_total
    total = sum(seconds.values())
    return {part: value / total for part, value in seconds.most_common()}


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "bf16-profile")
    p.add_argument("--variants", default="full-bf16,lora-bf16", help="comma list, as benchmarks/training.py names them")
    p.add_argument("--steps", type=int, default=3, help="profiled steps per variant (after one warm-up step)")
    args = p.parse_args(argv)
    device = common.setup(args)
    base, tokenizer, items = common.load(args)
    groups = common.groups(items, args)
    known = {v[0]: v for v in training.VARIANTS}
    config = training.TrainConfig(batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    shares, seconds = {}, {}
    for label in args.variants.split(","):
        _, how, dropout, packed = known[label.removesuffix("-bf16")]
        torch.manual_seed(args.seed)
        runner = training.Runner(common.build(base, how, dropout), config, device, packed,
                                 "bf16" if label.endswith("-bf16") else "fp32")
        runner.step(groups[0], tokenizer.pad_token_id)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            steps = [runner.step(groups[1 + i % (len(groups) - 1)], tokenizer.pad_token_id) for i in range(args.steps)]
        shares[label] = breakdown(prof)
        seconds[label] = {phase: common.median([s[phase] for s in steps]) for phase in (*training.PHASES, "step")}
        print(label, shares[label], file=sys.stderr)
    parts = [*PARTS, "adamw", "other"]
    record = {"benchmark": "bf16-profile", "command": "python benchmarks/bf16_profile.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "machine": common.machine(device), "model": args.model,
        "steps": args.steps, "shares": shares, "profiled_step_seconds": seconds}
    markdown = "\n\n".join([
        f"# Where a step's time goes ({args.model}, batch {args.batch_size} questions, torch.profiler)",
        f"`{record['command']}`", "## Machine\n" + common.machine_lines(record["machine"]),
        "## Share of profiled self time\n" + common.table(
            ["part", *shares], [[part, *(s.get(part, 0.0) for s in shares.values())] for part in parts]),
    ]) + "\n"
    common.write(args.name, record, markdown, args.no_write, args.results)
    return record


if __name__ == "__main__":
    main()
