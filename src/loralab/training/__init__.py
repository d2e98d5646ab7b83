"""The training loop and evaluation (`loop.py`): plain functions that know neither the task nor the strategy."""

from loralab.training.loop import PeakMemory, TrainConfig, TrainResult, evaluate, runaway_loss, score, train

__all__ = ["PeakMemory", "TrainConfig", "TrainResult", "evaluate", "runaway_loss", "score", "train"]
