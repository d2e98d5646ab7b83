"""The four core strategies on MiniLM, trained on 2,000 science-exam questions for one epoch.

Runs full, attention, qv and lora one after another in this process and prints a JSON summary
with each run's MAP@3, trainable parameters and training time, and the ratio of LoRA's median
step time to full fine-tuning's (same data order, same batches).

    python experiments/four_strategies.py --out runs/four-strategies
"""

import argparse
import json
from pathlib import Path

import torch

from loralab.runs.config import RunConfig
from loralab.runs import run
from loralab.strategies import StrategyConfig
from loralab.strategies.lora import LoraConfig
from loralab.training import TrainConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "science-exam"
LEARNING_RATES = {"full": 5e-5, "attention": 1e-4, "qv": 1e-4, "lora": 5e-4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/four-strategies")
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = {}
    for strategy, lr in LEARNING_RATES.items():
        config = RunConfig(
            train=f"{args.data}/train.csv", valid=f"{args.data}/valid.csv", train_limit=args.train_limit,
            strategy=StrategyConfig(strategy, LoraConfig(r=8, alpha=32, dropout=0.1, targets=("query", "value"))),
            training=TrainConfig(lr=lr, batch_size=8, epochs=1, max_length=256, seed=0),
        )
        records[strategy] = run(config, Path(args.out) / strategy, progress=False)
    summary = {
        name: {"map@3": r["valid"]["map@3"], "accuracy": r["valid"]["accuracy"], "lr": LEARNING_RATES[name],
               "trainable_params": r["trainable_params"], "train_seconds": r["train_seconds"],
               "median_step_seconds": r["median_step_seconds"], "peak_memory_mb": r["peak_memory_mb"]}
        for name, r in records.items()
    }
    summary["lora_over_full_median_step"] = records["lora"]["median_step_seconds"] / records["full"]["median_step_seconds"]
    text = json.dumps(summary, indent=2)
    (Path(args.out) / "summary.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
