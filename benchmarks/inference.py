"""Inference time of a LoRA model, merged and unmerged, against its base model.

Three copies of one model score the same batches (eval mode, no grad), interleaved batch by batch:
the base, the base with LoRA adapters (q,v, r=8) whose B was trained away from zero, and the same
adapters merged into the base weights with `loralab.strategies.lora.merge`. A merged model runs
the base model's arithmetic, so its ratio should sit at 1.

    python benchmarks/inference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from loralab.tasks.multiple_choice import collate  # noqa: E402
from loralab.strategies.lora import lora_layers, merge  # noqa: E402
from loralab.tasks.multiple_choice import choice_logits  # noqa: E402
from loralab.training.precision import autocast  # noqa: E402


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "inference")
    p.set_defaults(rounds=5)
    args = p.parse_args(argv)
    device = common.setup(args)
    base, tokenizer, items = common.load(args)
    groups = common.groups(items, args)
    torch.manual_seed(args.seed)
    unmerged = common.build(base, "lora")
    with torch.no_grad():  # a trained adapter: B away from zero, so merging changes the weights
        for layer in lora_layers(unmerged):
            layer.lora_B.normal_(0, 0.02)
    merged = common.build(unmerged, "full")  # a plain copy (the strategy only marks what trains)
    merge(merged)
    models = {"base": base, "lora-unmerged": unmerged, "lora-merged": merged}
    for m in models.values():
        m.to(device).eval()
    batches = [{k: v.to(device) for k, v in collate(g, tokenizer.pad_token_id).items()} for g in groups]
    with torch.no_grad():
        agree = torch.allclose(choice_logits(merged, batches[0]), choice_logits(unmerged, batches[0]), atol=1e-4)
    labels, paired = list(models), []
    with torch.inference_mode(), autocast(args.precision, device):
        for round_ in range(args.rounds):
            for b, batch in enumerate(batches):
                shift = (round_ * len(batches) + b) % len(labels)
                record = {}
                for label in labels[shift:] + labels[:shift]:
                    t0 = common.sync(device)
                    choice_logits(models[label], batch)
                    record[label] = common.sync(device) - t0
                if round_ or b:
                    paired.append(record)
    results = {label: {"seconds": common.median([r[label] for r in paired]),
                       "over_base": common.median([r[label] / r["base"] for r in paired])} for label in labels}
    ratios = {"merged_over_base": results["lora-merged"]["over_base"],
              "unmerged_over_base": results["lora-unmerged"]["over_base"]}
    record = {"benchmark": "inference", "command": "python benchmarks/inference.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": common.machine(device), "model": args.model, "batch_size": args.batch_size,
              "precision": args.precision, "paired_batches": len(paired), "merged_equals_unmerged": bool(agree), "ratios": ratios, "variants": results}
    markdown = "\n\n".join([
        f"# LoRA inference, merged and unmerged, against the base model ({args.model}, batch {args.batch_size} questions)",
        f"`{record['command']}`",
        "## Machine\n" + common.machine_lines(record["machine"]),
        f"{len(paired)} interleaved forward passes per model (eval, inference mode); medians of per-batch ratios. "
        f"Merged logits equal unmerged (atol 1e-4): {agree}.",
        common.table(["model", "seconds / batch", "/ base"], [[k, r["seconds"], r["over_base"]] for k, r in results.items()]),
    ]) + "\n"
    common.write(args.name, record, markdown, args.no_write, args.results)
    return record


if __name__ == "__main__":
    main()
