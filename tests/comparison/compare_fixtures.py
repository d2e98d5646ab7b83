"""Tiny data a comparison can run on in seconds: the right option always contains "apple"."""

from __future__ import annotations

from pathlib import Path

from run_fixtures import easy_questions

from loralab.comparison import CompareConfig, parse_methods
from loralab.runs.config import RunConfig
from loralab.training import TrainConfig


def easy_comparison(folder: Path, model: str | Path, methods=("full", "lora"), **settings) -> CompareConfig:
    """Two methods, brackets of four settings over two rungs of 2 and 4 steps, two seeds; no budget that matters."""
    train = folder / "train.csv" if (folder / "train.csv").exists() else easy_questions(folder / "train.csv", 32, 0)
    valid = folder / "valid.csv" if (folder / "valid.csv").exists() else easy_questions(folder / "valid.csv", 16, 1)
    base = RunConfig(train=str(train), valid=str(valid), model=str(model), device="cpu",
                     training=TrainConfig(batch_size=8, max_length=16))
    options = dict(budget_seconds=1e6, seeds=2, bracket_size=4, min_steps=2, eta=2, rungs=2, pilot_valid=16)
    return CompareConfig(base=base, methods=parse_methods(methods), **{**options, **settings})
