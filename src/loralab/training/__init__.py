"""The training loop and evaluation (`loop.py`): plain functions that know neither the task nor the strategy."""

from loralab.training.loop import TrainConfig, TrainResult, evaluate, runaway_loss, score, train
from loralab.training.memory import PeakMemory

__all__ = ["PeakMemory", "TrainConfig", "TrainResult", "evaluate", "runaway_loss", "score", "train"]
