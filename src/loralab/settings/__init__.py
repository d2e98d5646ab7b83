"""Every setting of loralab, each declared once on its config dataclass (`table.py` says how).

A run's configuration (`RunConfig`, `run.py`) nests the task's (`task.py`), the strategy's
(`strategy.py`), the training loop's (`training.py`) and the base model's storage (`model.py`).
`SETTINGS` is the table of all of them. Nothing here imports torch.
"""

from loralab.settings.model import DEFAULT_MODEL, Method, QuantizeConfig
from loralab.settings.run import SETTINGS, RunConfig, identity
from loralab.settings.strategy import LoraConfig, Projection, Strategy, StrategyConfig, SubspaceConfig
from loralab.settings.table import Setting, SettingsTable, setting
from loralab.settings.task import AUTO, SCORINGS, TASK_NAMES, TaskConfig
from loralab.settings.training import PRECISIONS, TrainConfig

__all__ = ["AUTO", "DEFAULT_MODEL", "Method", "PRECISIONS", "Projection", "QuantizeConfig", "RunConfig", "SCORINGS",
           "SETTINGS", "Setting", "SettingsTable", "Strategy", "StrategyConfig", "SubspaceConfig", "TASK_NAMES",
           "TaskConfig", "TrainConfig", "LoraConfig", "identity", "setting"]
