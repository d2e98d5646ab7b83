"""The intrinsic dimension of MNIST for a 784-200-200-10 network (Li et al. 2018, Sec. 3.1: ~750).

Train the network directly for the baseline, then only theta in random subspaces of dimension d
(W = W0 + P theta, the same W0 for every d), and search for the smallest d whose test accuracy
reaches 90% of the baseline's. Writes JSON, Markdown and a plot, and prints the figures as JSON.

    python experiments/mnist_intrinsic.py [--data /work/shared/data/mnist] [--out experiments/results/mnist-intrinsic]
    python experiments/mnist_intrinsic.py --report-only    # redraw Markdown and plot from the saved JSON
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from loralab.data.mnist import Split, load_mnist
from loralab.reports.intrinsic import IntrinsicResult, write_intrinsic
from loralab.sweeps.intrinsic import SearchConfig, find_intrinsic_dim
from loralab.strategies.subspace import SubspaceConfig, apply_subspace

HERE = Path(__file__).resolve().parent
NAME = "mnist-intrinsic"
TITLE = "MNIST 784-200-200-10 in a random subspace"


@dataclass(frozen=True)
class Protocol:
    """The training recipe shared by the baseline and every subspace run."""

    epochs_direct: int = 8
    """Passes over the 60,000 training images for the baseline."""
    epochs_subspace: int = 2
    """Passes for each subspace run (fewer than the baseline's: a 15-minute budget on 2 CPU cores)."""
    batch_size: int = 256
    """Images per step."""
    lr_direct: float = 1e-3
    """Adam learning rate of the baseline (Li et al.'s scripts: Adam, 0.001)."""
    lr_subspace: float = 3e-2
    """Adam learning rate of theta: higher than the baseline's, as a short budget needs."""
    projection: str = "fastfood"
    """How P is built."""
    init_seed: int = 0
    """Seed of W0, the same for every run."""
    seed: int = 1
    """Seed of P and of the batch order."""


def network(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, protocol: Protocol, lr: float, epochs: int) -> None:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    order = torch.Generator().manual_seed(protocol.seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=order).split(protocol.batch_size):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(dim=1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/mnist", help="folder of the MNIST .idx*-ubyte.gz files")
    parser.add_argument("--out", default=str(HERE / "results" / "mnist-intrinsic"), help="where to write the results")
    # One thread: on a shared 2-core machine, two OpenMP threads waited on each other for ~40x
    # longer per step (612 ms vs 16 ms) than one thread took alone.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--report-only", action="store_true", help="rewrite Markdown and plot from the saved JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.report_only:
        report_only(Path(args.out))
        return

    protocol = Protocol()
    search = SearchConfig(d_min=100, d_max=3000, per_decade=4, resolution=50, after_crossing=1)
    train_set, test_set = load_mnist(args.data, Split.TRAIN), load_mnist(args.data, Split.TEST)
    x_train, x_test = train_set.flat(), test_set.flat()
    start = time.perf_counter()

    baseline_model = network(protocol.init_seed)
    train(baseline_model, x_train, train_set.labels, protocol, protocol.lr_direct, protocol.epochs_direct)
    baseline = accuracy(baseline_model, x_test, test_set.labels)
    params = sum(p.numel() for p in baseline_model.parameters())
    print(json.dumps({"baseline_accuracy": round(baseline, 4), "params": params,
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)

    timings: dict[int, float] = {}

    def score(d: int) -> float:
        began = time.perf_counter()
        model = network(protocol.init_seed)
        apply_subspace(model, SubspaceConfig(dim=d, projection=protocol.projection, seed=protocol.seed))
        train(model, x_train, train_set.labels, protocol, protocol.lr_subspace, protocol.epochs_subspace)
        timings[d] = time.perf_counter() - began
        return accuracy(model, x_test, test_set.labels)

    def report(d: int, value: float) -> None:
        print(json.dumps({"d": d, "test_accuracy": round(value, 4), "seconds": round(timings[d], 1)}), flush=True)

    result = find_intrinsic_dim(score, baseline, search, on_point=report)
    wall = time.perf_counter() - start
    details = {
        "network": f"784-200-200-10, ReLU, {params:,} parameters",
        "score": "accuracy on the 10,000 MNIST test images",
        "training": f"Adam, batch {protocol.batch_size}, constant lr; baseline {protocol.epochs_direct} epochs at "
                    f"lr {protocol.lr_direct}, each subspace run {protocol.epochs_subspace} epochs at lr {protocol.lr_subspace}",
        "projection": f"{protocol.projection}, seed {protocol.seed}; W0 from seed {protocol.init_seed} for every run",
        "search": f"coarse log grid {list(search.grid())} (stopping {search.after_crossing} point past the crossing), "
                  f"then bisection to a bracket of {search.resolution}",
        "wall seconds (baseline + sweep, data loading excluded)": round(wall, 1),
        "machine": f"CPU, torch {torch.__version__}, {args.threads} threads",
        "paper": "Li et al. 2018 report d_int90 ~ 750 for this network (Adam, lr 0.001, 100 epochs)",
    }
    paths = write_intrinsic(result, args.out, name=NAME, metric="test accuracy", title=TITLE, details=details)
    record = json.loads(paths["json"].read_text())
    record["protocol"] = asdict(protocol)
    record["search"] = asdict(search)
    record["seconds_per_d"] = {str(d): round(t, 1) for d, t in sorted(timings.items())}
    paths["json"].write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"d_int90": result.d_int, "lower": result.lower, "baseline": round(baseline, 4),
                      "threshold": round(result.threshold, 4), "wall_seconds": round(wall, 1)}), flush=True)


def report_only(folder: Path) -> None:
    """Redraw the Markdown and the plot from the JSON record, keeping the record's extra fields."""
    path = folder / f"{NAME}.json"
    record = json.loads(path.read_text())
    extra = {key: record[key] for key in ("protocol", "search", "seconds_per_d") if key in record}
    write_intrinsic(IntrinsicResult.from_dict(record), folder, name=NAME, metric=record["metric"], title=TITLE,
                    details=record["details"])
    path.write_text(json.dumps({**json.loads(path.read_text()), **extra}, indent=2) + "\n")


if __name__ == "__main__":
    main()
