"""How a run's task head starts: its output bias, and which untrained parts of the checkpoint train with it.

A new head starts with its output bias at 0. Where the base is frozen (LoRA and its kin) a regression
head whose targets sit far from 0 (STS-B: 0 to 5, mean 2.7) spends its first steps only moving that
bias, and the model can settle on one constant prediction; starting the bias at the training targets'
mean removes that climb. A checkpoint can also ship a module its task model scores through at its
initialisation (all-MiniLM-L6-v2's and all-mpnet-base-v2's pooler): frozen, every score passes a random
layer. `loralab.models.head_start` acts on these settings; `docs/guide/tasks.md` has the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

from loralab.settings.table import setting
from loralab.validate import SettingError

REGRESSION_STARTS = ("mean", "zero")


@dataclass(frozen=True)
class HeadConfig:
    """How the task head starts."""

    regression: str = setting("mean", "Regression: the head's output bias starts at the training targets' mean "
                              "(mean) or at 0 (zero: transformers' own start, which can leave a frozen base "
                              "predicting one constant).", key="regression_start", folder="reg-start",
                              label="regression start", choices=REGRESSION_STARTS)
    prior: bool = setting(False, "Classification: the head's output bias starts at the log of each class's share "
                          "of the training labels (the label prior) instead of 0.", key="class_prior",
                          folder="prior", label="class prior")
    untrained: bool = setting(True, "Train with the head any module of the checkpoint still at its initialisation "
                              "that the task model scores through (a pooler whose bias is exactly 0 and whose "
                              "weights are no wider than 1.5 x initializer_range: all-MiniLM-L6-v2's); "
                              "--no-detect-untrained: only the architecture table's head.",
                              key="detect_untrained", label="untrained detected")

    def __post_init__(self):
        if self.regression not in REGRESSION_STARTS:
            raise SettingError("head.regression", self.regression, " or ".join(REGRESSION_STARTS))
        for name in ("prior", "untrained"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(f"head.{name}", getattr(self, name), "true or false")
