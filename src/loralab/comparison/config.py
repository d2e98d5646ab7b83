"""What a comparison is: the data and training defaults, the methods, their brackets, the seeds and the budget.

`CompareConfig` is checked when built, so a bad option is refused before anything is loaded or
written; `plan()` is what a resumed comparison must share with the one it continues (the budget may
change).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from loralab.comparison.methods import Method
from loralab.errors import LoralabError
from loralab.runs.config import RunConfig
from loralab.validate import number


def parse_minutes(text: str | float) -> float:
    """A budget in seconds from minutes ('4', '2.5') or a duration ('30m', '1h30m', '90s')."""
    from loralab.recommendation.config import parse_budget

    text = str(text).strip()
    try:
        minutes = float(text)
    except ValueError:
        return parse_budget(text)
    if not math.isfinite(minutes) or minutes <= 0:
        raise LoralabError(f"invalid --budget {text!r}: expected a positive number of minutes (or 30m, 1h, 90s)")
    return minutes * 60


@dataclass(frozen=True)
class CompareConfig:
    """A comparison: every method searched in its own bracket, then its best setting trained with seeds."""

    base: RunConfig
    """Data, task, limits, device and training defaults (batch size, epochs, seed) of every run."""
    methods: tuple[Method, ...]
    """The methods compared, each with its own bracket."""
    budget_seconds: float
    """Seconds for everything (pilots and final runs), split evenly between the methods."""
    seeds: int = 3
    """Final runs per method, at seeds base seed, base seed + 1, ..."""
    bracket_size: int | None = None
    """Settings each method's bracket starts with at the first rung (None with `rungs` None: as many as its
    share affords, `fill`; None with `rungs` given: 6)."""
    min_steps: int = 16
    """Optimizer steps of the first rung's pilots."""
    eta: int = 3
    """Each rung keeps the best 1/eta of its method's pilots and gives them eta times the steps."""
    rungs: int | None = None
    """Rungs per bracket (None with `bracket_size` None: as many as its share affords, the last at most a
    final run's length; None with `bracket_size` given: 3)."""
    pilot_valid: int = 200
    """Validation examples the pilots are scored on (the first ones of the file)."""
    clock: str = "wall"
    """What the budget counts: 'wall' seconds, or 'cpu' seconds of this process (steady on a shared CPU)."""
    metric: str | None = None
    """The validation metric the methods are judged by (None: the task's first); checked against the task's."""
    keep_ties: bool = True
    """A rung's pilots tied with its last survivor go on too (`Bracket.keep_ties`); False only for a folder
    planned before that rule, so it resumes with the rule it was planned by."""
    tie_break: bool = True
    """Pilots that score alike are ranked by their validation loss (`Bracket.entrants`); False only for a
    folder planned before that rule, so it resumes with the rule it was planned by."""
    pilot_seeds: int = 2
    """Seeds each pilot of a bracket's last rung trains with (seeds base seed, base seed + 1, ...), when the
    bracket has more than one rung; its score there is their mean (`Bracket.seeds_at`). 1 for a folder planned
    before that rule."""
    per_choice: bool = True
    """Each combination of a method's choices spans its learning-rate range, and no setting repeats
    (`comparison.methods.position`); False only for a folder planned before that rule."""

    hedge: bool = True
    """A rung whose survivors all have about one learning rate keeps a lower one too (`Bracket.hedge`); False only
    for a folder planned before that rule."""

    def __post_init__(self):
        number("budget", self.budget_seconds, low=0, low_open=True)
        number("seeds", self.seeds, integer=True, low=1, high=100)
        if self.bracket_size is not None:
            number("bracket_size", self.bracket_size, integer=True, low=1, high=64)
        number("min_steps", self.min_steps, integer=True, low=1)
        number("eta", self.eta, integer=True, low=2)
        if self.rungs is not None:
            number("rungs", self.rungs, integer=True, low=1, high=8)
        number("pilot_valid", self.pilot_valid, integer=True, low=1)
        number("pilot_seeds", self.pilot_seeds, integer=True, low=1, high=10)
        if self.clock not in ("wall", "cpu"):
            raise LoralabError(f"invalid --budget-clock {self.clock!r}: expected wall or cpu")
        if not self.methods:
            raise LoralabError("compare needs at least one method (--methods)")
        if not self.base.valid:
            raise LoralabError("compare needs a validation file (--valid): the methods are compared on it")

    @property
    def fills(self) -> bool:
        """Whether each method's bracket is shaped by its share (neither its size nor its rungs given)."""
        return self.bracket_size is None and self.rungs is None

    @property
    def size(self) -> int:
        """Settings of a given bracket (a filled one starts from this many and grows)."""
        return self.bracket_size or 6

    @property
    def rung_count(self) -> int:
        """Rungs of a given bracket."""
        return self.rungs or 3

    def share(self) -> float:
        """Each method's part of the budget."""
        return self.budget_seconds / len(self.methods)

    def plan(self) -> dict[str, Any]:
        """What a resumed comparison must share with the one it continues (the budget may change)."""
        return json.loads(json.dumps({
            "base": self.base.to_dict(),
            "methods": [[m.name, list(m.lr_range), {k: list(v) for k, v in m.choices.items()}] for m in self.methods],
            "seeds": self.seeds, "bracket_size": self.bracket_size, "min_steps": self.min_steps, "eta": self.eta,
            "rungs": self.rungs, "pilot_valid": self.pilot_valid, "clock": self.clock,
            **({"metric": self.metric} if self.metric else {}),  # a plan from before --metric had none
            **({"keep_ties": True} if self.keep_ties else {}),  # nor one from before ties were kept
            **({"tie_break": "validation loss"} if self.tie_break else {}),  # nor one from before losses broke them
            **({"rates": "spread per choice"} if self.per_choice else {}),  # nor one from before that
            **({"last_rung_seeds": self.pilot_seeds} if self.pilot_seeds != 1 else {}),  # nor one from before that
            **({"survivors": "a lower rate kept"} if self.hedge else {})}))  # nor one from before that
