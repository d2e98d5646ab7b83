"""Inference time of a LoRA model, unmerged and merged, relative to its base model, in one run.

LoRA's claim (Hu et al. 2021, Sec. 4.1): once B A is folded into W0 the adapted model costs exactly
what the base model costs, while the unmerged model pays for two extra small matmuls per adapted
layer. This script loads the packaged MiniLM three ways (plain; LoRA on query and value, r=8,
with B drawn non-zero so the adapters do work; that LoRA model merged into a plain BERT), checks
the merged model computes what the unmerged one does, then scores the questions of a CSV with each.

Timing is interleaved batch by batch, with the order of the three models rotated every batch, so
load from other processes falls on all three alike; each repeat is one pass over the data and
yields one ratio per model, and the median over repeats is reported. Prints JSON.

    python benchmarks/inference_merged.py --data ../shared/data/science-exam/valid.csv
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from loralab.data.batching import batches, encode
from loralab.data.multiple_choice import read_questions
from loralab.merge import materialise
from loralab.models import load_model, load_tokenizer
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig, lora_layers

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "science-exam" / "valid.csv"


def build_models(name: str, rank: int, seed: int) -> dict[str, torch.nn.Module]:
    base = load_model(name, seed=seed).eval()
    lora = load_model(name, seed=seed)
    apply_strategy(lora, StrategyConfig(Strategy.LORA, lora=LoraConfig(r=rank, alpha=2.0 * rank)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(lora):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.02)  # as if trained
    lora.eval()
    merged = materialise(copy.deepcopy(lora), Strategy.LORA).eval()
    return {"base": base, "unmerged": lora, "merged": merged}


def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "choice_mask")}
    return model(**inputs).logits  # (batch, choices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="multiple-choice CSV to score")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the data per model")
    parser.add_argument("--limit", type=int, help="use only the first N questions")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer = load_tokenizer(args.model)
    questions = read_questions(args.data, limit=args.limit)
    items = encode(questions, tokenizer, args.max_length)
    data = list(batches(items, args.batch_size, tokenizer.pad_token_id, group_by_length=True))
    models = build_models(args.model, args.rank, args.seed)
    names = list(models)

    with torch.inference_mode():
        outputs = {name: forward(model, data[0]) for name, model in models.items()}  # also a warm-up
        merged_error = (outputs["merged"] - outputs["unmerged"]).abs().max().item()
        lora_effect = (outputs["unmerged"] - outputs["base"]).abs().max().item()
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for repeat in range(args.repeats):
            total = dict.fromkeys(names, 0.0)
            for index, batch in enumerate(data):
                shift = (index + repeat) % len(names)
                for name in names[shift:] + names[:shift]:
                    start = time.perf_counter()
                    forward(models[name], batch)
                    total[name] += time.perf_counter() - start
            for name in names:
                seconds[name].append(total[name])

    def ratio(name: str) -> float:
        return statistics.median(s / b for s, b in zip(seconds[name], seconds["base"]))

    print(json.dumps({
        "benchmark": "inference_merged",
        "model": args.model,
        "data": str(args.data),
        "questions": len(questions),
        "sequences": sum(item.num_choices for item in items),
        "tokens": sum(len(ids) for item in items for ids in item.features["input_ids"]),
        "lora": {"r": args.rank, "targets": ["query", "value"]},
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "max_abs_diff_merged_vs_unmerged": merged_error,
        "max_abs_diff_unmerged_vs_base": lora_effect,
        "seconds_per_pass": {name: [round(s, 3) for s in seconds[name]] for name in names},
        "merged_over_base": round(ratio("merged"), 4),
        "unmerged_over_base": round(ratio("unmerged"), 4),
    }, indent=2))


if __name__ == "__main__":
    main()
