"""Measuring a task's intrinsic dimension with real runs: `loralab intrinsic-dim`.

A baseline run trains the model directly (full fine-tuning); then `find_intrinsic_dim` asks for
subspace runs of chosen dimensions d, each an ordinary run folder (`d-<d>/run.json`) trained with
the subspace strategy on the same data, schedule and seed. Every run is skipped when a finished
record for the same configuration is already there, so an interrupted measurement resumes.
Writes `intrinsic.json`, `intrinsic.md` and `intrinsic.png` (metric against d, the 90% line) and
the usual sweep report of all runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from loralab.runs.artifacts import RECORD, read_json
from loralab.runs.config import RunConfig
from loralab.tasks import check_data, get_task
from loralab.errors import LoralabError
from loralab.metrics import METRICS
from loralab.validate import number
from loralab.runs.state import record_state, rerun
from loralab.reports.intrinsic import IntrinsicResult, write_intrinsic
from loralab.sweeps.intrinsic import SearchConfig, find_intrinsic_dim
from loralab.strategies import Strategy, StrategyConfig
from loralab.strategies.subspace import Projection, SubspaceConfig



@dataclass(frozen=True)
class DimensionConfig:
    """How to measure: the baseline's and the subspace runs' settings, and where to look for d."""

    base: RunConfig
    """Data, model and training settings shared by every run (its strategy is ignored)."""
    baseline_lr: float = 5e-5
    """Learning rate of the full fine-tuning baseline."""
    theta_lr: float = 1e-2
    """Learning rate of theta: much larger than the baseline's, as P's unit columns spread each step thin."""
    head_lr: float | None = None
    """Learning rate of a directly trained head and of the SAID scales (None: `theta_lr`). theta's
    rate is far too large for a linear head, whose logits it would swing by hundreds per step."""
    lr_reference_dim: int | None = None
    """When set, theta's learning rate is `theta_lr * sqrt(lr_reference_dim / d)`: an Adam step
    moves each of the d coordinates by about the learning rate, hence the weights by lr * sqrt(d)
    (P's columns have unit length); this keeps that distance the same at every d."""
    projection: Projection = Projection.SAID
    """How P is built."""
    subspace_seed: int = 0
    """Seed of P."""
    search: SearchConfig = SearchConfig(d_min=100, d_max=10_000, per_decade=2, resolution=100)
    """The coarse grid and the bisection's resolution."""
    metric: str = "accuracy"
    """The score compared with the baseline: accuracy or map@3."""
    train_head: bool = False
    """Train the task head directly, beside theta; by default it moves through the subspace like every
    other weight (Li et al.), so exactly d numbers train."""
    exclude: tuple[str, ...] = ()
    """Parameter-name prefixes kept frozen outside the subspace (the baseline still trains them)."""

    def __post_init__(self):
        object.__setattr__(self, "projection", Projection.parse(self.projection))
        if self.metric not in METRICS:  # which of them the task reports is checked when the baseline is scored
            raise LoralabError(f"invalid metric={self.metric!r}: choose one of {', '.join(METRICS)}")
        if not self.base.valid:
            raise LoralabError("measuring the intrinsic dimension needs validation data (--valid)")
        number("lr_reference_dim", self.lr_reference_dim, integer=True, low=1, optional=True)
        for name in ("baseline_lr", "theta_lr", "head_lr"):
            number(name, getattr(self, name), low=0, low_open=True, optional=name == "head_lr")

    def baseline(self) -> RunConfig:
        return dataclasses.replace(self.base, strategy=StrategyConfig(Strategy.FULL),
                                   training=dataclasses.replace(self.base.training, lr=self.baseline_lr))

    def at(self, d: int) -> RunConfig:
        subspace = SubspaceConfig(dim=d, projection=self.projection, seed=self.subspace_seed, exclude=self.exclude)
        strategy = StrategyConfig(Strategy.SUBSPACE, subspace=subspace, train_head=self.train_head)
        scale = 1.0 if self.lr_reference_dim is None else math.sqrt(self.lr_reference_dim / d)
        if self.head_lr is None and self.lr_reference_dim is None:
            training = dataclasses.replace(self.base.training, lr=self.theta_lr)
        else:
            training = dataclasses.replace(self.base.training, lr=self.head_lr or self.theta_lr,
                                           theta_lr=self.theta_lr * scale)
        return dataclasses.replace(self.base, strategy=strategy, training=training)


def measure(config: DimensionConfig, out_dir: str | Path, *, run_fn: Callable[..., dict] | None = None,
            progress: bool = True, log: Callable[[str], None] = print) -> tuple[IntrinsicResult, dict[str, Path]]:
    """Train the baseline and the subspace runs the search asks for; write and return d_int."""
    if run_fn is None:
        from loralab.runs import run as run_fn
    out_dir = Path(out_dir)
    for key in ("train", "valid"):
        if not Path(getattr(config.base, key)).is_file():
            raise LoralabError(f"{key} file {getattr(config.base, key)} not found")
    task = get_task(check_data(config.base))  # a bad row stops the measurement before anything is written
    if config.metric not in task.metrics:
        raise LoralabError(f"the {task.name} task reports {', '.join(task.metrics)}, not {config.metric}; "
                           "choose one of them with --metric")
    start = time.perf_counter()

    def score(name: str, run_config: RunConfig) -> float:
        folder = out_dir / name
        state, why = record_state(folder, run_config)
        if state == "done":
            record = read_json(folder / RECORD)
            log(f"{name}: kept ({why})")
        else:
            log(f"{name}: training" + ("" if why == "not run yet" else f" ({why})"))
            record = rerun(run_fn, run_config, folder, progress=progress, log=log)
        if record.get("status") == "diverged":
            log(f"{name}: diverged at step {record.get('diverged_at_step')}; scored 0")
            return 0.0
        value = record["valid"].get(config.metric)
        if value is None:
            raise LoralabError(f"{folder / RECORD}: {config.metric} is undefined on this validation set "
                               "(constant labels?); measure with another --metric")
        value = float(value)
        log(f"{name}: {config.metric} {value:.4f}  ({record['trainable_params']:,} trainable, "
            f"{record['train_seconds']:.0f} s)")
        return value

    baseline = score("baseline", config.baseline())
    log(f"baseline {config.metric} {baseline:.4f}; threshold {config.search.fraction:.0%} of it: "
        f"{config.search.fraction * baseline:.4f}")
    result = find_intrinsic_dim(lambda d: score(f"d-{d}", config.at(d)), baseline, config.search)
    details: dict[str, Any] = {
        "model": config.base.model,
        "train": config.base.train,
        "valid": config.base.valid,
        "train_limit": config.base.train_limit,
        "valid_limit": config.base.valid_limit,
        "projection": config.projection.value,
        "head": "trained directly" if config.train_head else "in the subspace",
        "excluded": list(config.exclude),
        "subspace_seed": config.subspace_seed,
        "baseline_lr": config.baseline_lr,
        "theta_lr": config.theta_lr,
        "head_lr": config.head_lr,
        "lr_reference_dim": config.lr_reference_dim,
        "training": dataclasses.asdict(config.base.training),
        "search": dataclasses.asdict(config.search),
        "runs": ["baseline"] + [f"d-{d}" for d, _ in result.points],
        "seconds_this_invocation": round(time.perf_counter() - start, 1),
    }
    title = f"Intrinsic dimension: {Path(str(config.base.model)).name}, {Path(config.base.train).name}, {config.projection.value}"
    files = write_intrinsic(result, out_dir, metric=config.metric, title=title, details=details)
    return result, files
