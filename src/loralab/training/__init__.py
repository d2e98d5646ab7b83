"""Training and evaluation: plain functions that know neither the task nor the strategy.

`loop.py` (train, score, evaluate), `optimizer.py` (AdamW and its schedule), `batching.py`
(length-grouped batches), `memory.py` (peak memory), `precision.py` (bf16 autocast),
`distributed.py` (DDP and FSDP2), and `interface.py` (what the loop asks of a task and a strategy).
"""

from loralab.training.loop import TrainConfig, TrainResult, evaluate, runaway_loss, score, train
from loralab.training.memory import PeakMemory

__all__ = ["PeakMemory", "TrainConfig", "TrainResult", "evaluate", "runaway_loss", "score", "train"]
