"""The intrinsic dimension of SST-2 for MiniLM-L6 fine-tuned in a SAID subspace.

SST-2 (GLUE) sentences become two-option questions: the sentence is the prompt, the options are
the label words "negative" and "positive", and the multiple-choice head scores each (sentence,
word) pair, so the task runs through loralab's ordinary pipeline. The baseline is full fine-tuning;
then `loralab.sweeps.dimension.measure` trains in SAID subspaces of growing d and reports the smallest d
whose dev accuracy reaches 90% of the baseline's (Aghajanyan et al. 2020 measure MRPC and QQP this
way on BERT and RoBERTa).

With one epoch of 2,000 sentences (125 steps) no d up to 60,000 reached 90% (best 88%); 4,000
sentences (250 steps) is the default. Two choices, both from pilot runs at the 2,000-sentence budget: the
multiple-choice head (385 weights, randomly initialised) trains directly beside theta, since inside
the subspace it barely moves and the encoder then gets almost no gradient (nothing was learned at
d = 1,000 and 3,000, lr 0.01 to 0.3); and the word-embedding table (11.7M of the 22.7M weights,
mostly rows of tokens absent from the data) stays frozen outside the subspace, which halves the cost
of P. theta's learning rate is 0.1 at d = 2,000 (0.01 learned nothing; 0.3 diverged upwards),
scaled as 1/sqrt(d) at other d, since an Adam step moves the weights by about lr sqrt(d); the head
and SAID scales train at 1e-3. With theta's rate on the head as well, a first sweep (d = 200 ...
20,000) scored 0.54, 0.53, 0.71, 0.51, 0.72: runs that failed had swung the head into predicting
one class (0.509); with the head at 1e-3 the failed d = 6,325 run learned (0.70 on 400 dev).

    python experiments/sst2_intrinsic.py --out runs/sst2-said-4000    # the committed result
    python experiments/sst2_intrinsic.py --train-size 2000 --d-min 200 --resolution 100 --out runs/sst2-said

Prints the result as JSON. Rerunning resumes: finished runs are kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
import warnings
from pathlib import Path

import torch

from loralab.runs.config import RunConfig
from loralab.sweeps.dimension import DimensionConfig, measure
from loralab.sweeps.intrinsic import SearchConfig
from loralab.reports import write_report
from loralab.training import TrainConfig

GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
WORDS = ("negative", "positive")


def to_questions(source: Path, target: Path, limit: int | None, seed: int) -> int:
    """Write SST-2 rows (sentence, label) as multiple-choice rows; a seeded sample of `limit` rows."""
    with source.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt", "A", "B", "answer"])
        for i, row in enumerate(rows):
            writer.writerow([i, row["sentence"].strip(), *WORDS, "AB"[int(row["label"])]])
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue", default=str(GLUE), help="GLUE folder holding SST-2/")
    parser.add_argument("--out", default="runs/sst2-said-4000")
    parser.add_argument("--train-size", type=int, default=4000, help="sentences sampled from train_full.tsv")
    parser.add_argument("--valid-size", type=int, help="sentences of dev.tsv (default: all 872)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--projection", default="said")
    parser.add_argument("--lr", type=float, default=1e-1, help="learning rate of theta at --lr-reference-dim")
    parser.add_argument("--head-lr", type=float, default=1e-3, help="learning rate of the head and the SAID scales")
    parser.add_argument("--baseline-lr", type=float, default=1e-4)
    parser.add_argument("--d-min", type=int, default=2000)
    parser.add_argument("--d-max", type=int, default=60_000)
    parser.add_argument("--lr-reference-dim", type=int, default=2000,
                        help="theta's lr is --lr at this d and scales as 1/sqrt(d) (0: the same lr at every d)")
    parser.add_argument("--per-decade", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    out = Path(args.out)
    sst2 = Path(args.glue) / "SST-2"
    train, valid = out / "data" / "train.csv", out / "data" / "valid.csv"
    n_train = to_questions(sst2 / "train_full.tsv", train, args.train_size, seed=0)
    n_valid = to_questions(sst2 / "dev.tsv", valid, args.valid_size, seed=0)
    training = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, max_length=128, seed=0)
    config = DimensionConfig(
        base=RunConfig(train=str(train), valid=str(valid), model="minilm", training=training, device="cpu"),
        baseline_lr=args.baseline_lr, theta_lr=args.lr, projection=args.projection,
        search=SearchConfig(d_min=args.d_min, d_max=args.d_max, per_decade=args.per_decade,
                            resolution=args.resolution),
        train_head=True, exclude=("bert.embeddings.word_embeddings",), lr_reference_dim=args.lr_reference_dim or None,
        head_lr=args.head_lr,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the task head")
        result, files = measure(config, out, progress=False)
    write_report(out, metric="accuracy")
    print(json.dumps({
        "task": f"SST-2 as two-option questions, {n_train} train sentences, {n_valid} dev sentences",
        "baseline_accuracy": result.baseline,
        "threshold": result.threshold,
        "d_int90": result.d_int,
        "largest_miss": result.lower,
        "points": dict(result.points),
        "seconds": round(time.perf_counter() - start, 1),
        "files": [str(f) for f in files.values()],
    }, indent=2))


if __name__ == "__main__":
    main()
