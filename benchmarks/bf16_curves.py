"""Loss curves of `loralab.training` on MiniLM with the seed fixed, to compare one commit's numbers with another's.

Each (strategy, precision) trains from the same initial model on the same questions for `steps` optimizer
steps (batch 8, LoRA at lr 1e-3, full at 2e-5) and records its losses and a SHA-256 of its trained weights.
Run it on two commits and compare: fp32 runs must agree bit for bit (equal hashes), bf16 runs within bf16
rounding (about the size of their distance from the fp32 curve).

    python benchmarks/bf16_curves.py out.json --steps 30
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from loralab.tasks.multiple_choice import TASK as MC  # noqa: E402
from loralab.training import TrainConfig, train  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--precisions", default="bf16,fp32")
    p.add_argument("--strategies", default="lora,full")
    p.add_argument("--data", default=str(common.DATA))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    loading = common.parser("", "").parse_args(["--data", args.data])
    base, tokenizer, _ = common.load(loading)
    items = common.load_items(loading, args.steps * 8)
    record = {}
    for precision in args.precisions.split(","):
        for how in args.strategies.split(","):
            torch.manual_seed(0)
            model = common.build(base, how, 0.0)
            config = TrainConfig(batch_size=8, max_steps=args.steps, seed=0, precision=precision,
                                 lr=2e-5 if how == "full" else 1e-3)
            result = train(model, items, config, task=MC, pad_id=tokenizer.pad_token_id, progress=False)
            weights = b"".join(p.detach().contiguous().numpy().tobytes() for p in model.parameters() if p.requires_grad)
            record[f"{how}-{precision}"] = {"losses": result.losses, "trainable_sha256": hashlib.sha256(weights).hexdigest()}
            print(how, precision, [round(x, 4) for x in result.losses], file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
