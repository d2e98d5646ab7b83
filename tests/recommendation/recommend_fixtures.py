"""Data and a model a recommend search can tell learning from not learning on, in seconds.

The questions are easy on purpose: the right option always contains "apple", the others never do,
so a tiny BERT at a sensible learning rate gets better within a few steps, while one at 1e-9 cannot.
"""

from __future__ import annotations

from pathlib import Path

from run_fixtures import easy_questions

from loralab.recommendation import RecommendConfig, candidates
from loralab.runs.config import RunConfig
from loralab.strategies import Strategy
from loralab.training import TrainConfig

GOOD_LR, BAD_LR = 1e-3, 1e-9


def easy_search(folder: Path, model: Path, **settings) -> RecommendConfig:
    """full at a rate that learns against LoRA at one that cannot, one bracket of four, no time limit
    that matters."""
    train = folder / "train.csv" if (folder / "train.csv").exists() else easy_questions(folder / "train.csv", 64, 0)
    valid = folder / "valid.csv" if (folder / "valid.csv").exists() else easy_questions(folder / "valid.csv", 32, 1)
    base = RunConfig(train=str(train), valid=str(valid), device="cpu", training=TrainConfig(batch_size=4, max_length=16))
    ranges = {Strategy.FULL: (GOOD_LR, GOOD_LR), Strategy.LORA: (BAD_LR, BAD_LR)}
    options = dict(budget_seconds=1e6, min_steps=4, eta=2, rungs=2, bracket_size=4, pilot_valid=32, brackets=1)
    return RecommendConfig(base=base, candidates=candidates((str(model),), (Strategy.FULL, Strategy.LORA), ranges),
                           **{**options, **settings})
