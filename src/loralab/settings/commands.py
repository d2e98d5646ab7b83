"""The settings of the commands that plan many runs: `recommend`'s search, `compare`'s brackets and
`intrinsic-dim`'s measurement. Their run settings (epochs, batch size, ...) are `RunConfig`'s; these are the
rest, declared here so that `--help` shows them without importing the libraries that carry them out."""

from __future__ import annotations

from dataclasses import dataclass

from loralab.settings.strategy import Projection
from loralab.settings.table import setting
from loralab.validate import SettingError


@dataclass(frozen=True)
class RecommendOptions:
    """How `loralab recommend` searches: what it tries, and what it may spend."""

    budget: str = setting("", "Time for the whole search, final run included (30m, 1h30m, 1590s).",
                          cli_default="required")
    budget_clock: str = setting("wall", "What --budget counts: wall-clock seconds, or this process's CPU seconds "
                                "(steady on a CPU shared with other jobs).", choices=("wall", "cpu"))
    brackets: int | None = setting(None, "Stop after this many brackets per method even if budget is left.")
    models: tuple[str, ...] = setting(("minilm",), "Comma list of models (folders, packaged names or hub names).")
    strategies: tuple[str, ...] = setting(("full", "attention", "lora", "dora", "lora+", "pissa", "vera", "ia3"),
                                          "Comma list of methods to try: strategies (full, attention, qv, lora, "
                                          "subspace, vera, ia3, galore) or LoRA variants (rslora, dora, lora+, pissa, "
                                          "olora); each gets its own brackets and share of the budget.")
    memory: str | None = setting(None, "Peak memory a run may use (8GB, 512MB); candidates over it are excluded.")
    min_steps: int = setting(16, "Optimizer steps of the first rung's pilots.")
    eta: int = setting(3, "Each rung keeps the best 1/eta with eta times the steps.")
    rungs: int = setting(3, "Rungs per bracket.")
    bracket_size: int | None = setting(None, "Most settings drawn per bracket of one method (none: eta ** (rungs - 1)); "
                                       "fewer when its share of the budget holds fewer.")
    pilot_valid: int = setting(200, "Validation examples pilots are scored on (the first ones of the file).")
    search_seed: int = setting(0, "Seed of Optuna's sampler (each run's own seed is --seed).")
    storage: str | None = setting(None, "Optuna storage shared by workers: an SQL URL or a journal file (none: "
                                  "OUT/study.journal).")
    worker: str = setting("main", "This worker's name when several share one search; only 'main' trains the winner.")
    final: bool = setting(True, "Train the winner on all the data once the pilots are done (--no-final: stop "
                          "after the pilots).")
    lr_points: int | None = setting(None, "Search each method's learning rate among N rates spread evenly over its "
                                    "range on a log scale (none: any rate in the range); makes the space finite.",
                                    metavar="N")
    lora_ranks: tuple[str, ...] = setting((), "LoRA family: the ranks r searched (none: each method's own, 8 or 16).",
                                          metavar="R,R")
    lora_alphas: tuple[str, ...] = setting((), "LoRA family: the alphas searched (none: each method's own, 16 or 32).",
                                           metavar="A,A")
    lora_target_sets: tuple[str, ...] = setting((), "LoRA family: the target sets searched, qv (query and value) or "
                                                "all-linear (every linear layer) (none: both).", metavar="SETS")
    grid: bool = setting(False, "Instead of searching, train every setting of the space (made finite with "
                         "--lr-points) on all the data, one seed each, into OUT/grid, and write grid.json and "
                         "grid.md: the exhaustive reference a search is judged against (--budget is not enforced).")

    def space(self) -> dict:
        """The search space's options as `recommendation.candidates` takes them (numbers checked there)."""
        def numbers(option: str, values: tuple[str, ...], kind: type) -> tuple:
            try:
                return tuple(kind(v) for v in values)
            except ValueError:
                raise SettingError(option, ",".join(values), "a comma list of numbers") from None

        return {"lr_points": self.lr_points, "lora_ranks": numbers("--lora-ranks", self.lora_ranks, int) or None,
                "lora_alphas": numbers("--lora-alphas", self.lora_alphas, float) or None,
                "lora_targets": tuple(self.lora_target_sets) or None}


@dataclass(frozen=True)
class CompareOptions:
    """How `loralab compare` judges the methods: which ones, their brackets, the seeds and the budget."""

    budget: str = setting("", "Time for the whole comparison, final runs included, split evenly between the "
                          "methods: minutes (4, 2.5) or a duration (30m, 1h30m, 90s).", cli_default="required")
    budget_clock: str = setting("wall", "What --budget counts: wall-clock seconds, or this process's CPU seconds "
                                "(steady on a CPU shared with other jobs).", choices=("wall", "cpu"))
    methods: tuple[str, ...] = setting(("full", "attention", "qv", "lora", "rslora", "dora", "lora+", "pissa", "olora",
                                        "vera", "ia3", "galore"), "Comma list of methods to compare.")
    seeds: int = setting(3, "Final runs of each method's best setting, at seeds --seed, --seed + 1, ...")
    bracket_size: int | None = setting(None, "Settings each method's bracket starts with (learning rates across its "
                                       "bracket, its other settings cycled); none: 6 with --rungs, else as many "
                                       "as the method's share affords (up to 64) once its rungs fit.")
    min_steps: int = setting(16, "Optimizer steps of the first rung's pilots.")
    eta: int = setting(3, "Each rung keeps the best 1/eta of its method's pilots, with eta times the steps.")
    rungs: int | None = setting(None, "Rungs per bracket; none: 3 with --bracket-size, else as many as the method's "
                                "share affords after its final runs (min-steps x eta**k, the last at most a final "
                                "run's length), each keeping at least two settings.")
    pilot_valid: int = setting(200, "Validation examples pilots are scored on (the first ones of the file).")
    pilot_seeds: int = setting(2, "Seeds each pilot of a bracket's last rung trains with (--seed, --seed + 1, ...; "
                               "a bracket that fills its share takes them where they fit after its rungs); its "
                               "score there is their mean, so a setting that trains in one seed only is not "
                               "picked.")
    metric: str | None = setting(None, "The validation metric the methods are judged by, one of the task's "
                                 "(GLUE's CoLA: mcc; none: the task's first, e.g. accuracy or pearson).")


@dataclass(frozen=True)
class IntrinsicOptions:
    """How `loralab intrinsic-dim` measures: the baseline, the subspace runs, and where it looks for d."""

    projection: Projection = setting(Projection.SAID, "How P is built: dense, sparse, fastfood or said.",
                                     choices=tuple(p.value for p in Projection))
    subspace_seed: int = setting(0, "Seed of P.")
    exclude: tuple[str, ...] = setting((), "Comma list of parameter-name prefixes kept frozen, outside the subspace "
                                       "(the baseline still trains them).", metavar="PREFIXES")
    theta_lr: float = setting(1e-2, "Learning rate of theta in the subspace runs.")
    head_lr: float | None = setting(None, "Learning rate of a directly trained head (--train-head) and of the SAID "
                                    "scales (none: --theta-lr).")
    lr_reference_dim: int | None = setting(None, "Scale theta's learning rate by sqrt(D0 / d), so that a step moves "
                                           "the weights equally far at every d.", metavar="D0")
    baseline_lr: float = setting(5e-5, "Learning rate of the full fine-tuning baseline.")
    metric: str = setting("accuracy", "The score compared with the baseline (regression: pearson or spearman).")
    train_head: bool = setting(False, "Train the task head directly, beside theta (default: it moves through the "
                               "subspace too, so exactly d numbers train).")
    fraction: float = setting(0.9, "The threshold as a fraction of the baseline (0.9: d_int90).")
    d_min: int | None = setting(None, "Smallest d of the coarse log grid (none: 100; 300 with said, which spends "
                                "one of the d numbers on each weight tensor).")
    d_max: int = setting(10_000, "Largest d of the coarse log grid.")
    per_decade: int = setting(2, "Coarse grid points per factor of 10.")
    resolution: int = setting(100, "Bisection stops at a bracket this narrow.")

    def smallest_d(self) -> int:
        """`d_min`, else the default for the projection: SAID spends one of d per weight tensor."""
        return self.d_min or (300 if Projection.parse(self.projection) is Projection.SAID else 100)
