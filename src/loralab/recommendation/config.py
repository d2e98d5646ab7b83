"""What a recommend search is: the data and training defaults, the candidates, and what it may spend.

`RecommendConfig` is validated when built, so a bad option is refused before anything is loaded or
written; `plan()` is the part a resumed search must share with the one it continues.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from loralab.errors import LoralabError
from loralab.recommendation.space import Candidate
from loralab.runs.config import RunConfig
from loralab.validate import number

_SECONDS = {"s": 1, "m": 60, "h": 3600}
_DURATION = r"([0-9]*\.?[0-9]+)\s*([smh]?)"


def parse_budget(text: str) -> float:
    """'30m', '1h30m', '1590s', '1590' (seconds) -> seconds."""
    text = str(text).strip().lower()
    parts = re.findall(_DURATION, text)
    if not parts or re.sub(_DURATION, "", text).strip():
        raise LoralabError(f"invalid --budget {text!r}: expected a duration such as 30m, 1h30m or 1590s")
    seconds = sum(float(n) * _SECONDS[unit or "s"] for n, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise LoralabError(f"invalid --budget {text!r}: expected a positive duration")
    return seconds


@dataclass(frozen=True)
class RecommendConfig:
    """A recommend search: the data and training defaults, what to try, and what it may spend."""

    base: RunConfig
    """Data, task, limits, device and training defaults (batch size, max length, epochs, seed) of every run."""
    candidates: tuple[Candidate, ...]
    """Model x method pairs, each with its learning-rate range; each is a family of its own, whose
    settings compete only with each other."""
    budget_seconds: float
    """Seconds the search may spend on probes, pilots, the final run and itself together."""
    memory_mb: float | None = None
    """Peak memory a run may use (None: no limit)."""
    min_steps: int = 16
    """Optimizer steps of the first rung (r0)."""
    eta: int = 3
    """Each rung keeps the best 1/eta and gives them eta times the steps."""
    rungs: int = 3
    """Rungs per bracket: r0, r0 * eta, ..., r0 * eta**(rungs - 1) steps."""
    bracket_size: int | None = None
    """Most settings drawn per bracket of one candidate (None: eta ** (rungs - 1), one survivor at the
    last rung); fewer when the candidate's share of the budget holds fewer."""
    pilot_valid: int = 200
    """Validation examples pilots are scored on (the first ones of the file)."""
    seed: int = 0
    """Seed of the sampler (each run's own seed is base.training.seed)."""
    storage: str | None = None
    """Optuna storage: an SQLAlchemy URL (sqlite:///..., postgresql://...) or a journal file's path
    (None: `study.journal` in the output folder)."""
    worker: str = "main"
    """This process's name among several sharing one study; only 'main' trains the winner."""
    clock: str = "wall"
    """What the budget counts: 'wall' seconds, or 'cpu' seconds of this process (steady on a shared CPU)."""
    brackets: int | None = None
    """Stop after this many brackets per candidate of this worker even if budget is left (None: only the
    budget stops it)."""
    grid: bool = False
    """Train every setting of the (finite) space on all the data instead of searching (`grid.py`)."""

    def __post_init__(self):
        number("budget", self.budget_seconds, low=0, low_open=True)
        number("memory", self.memory_mb, low=0, low_open=True, optional=True)
        number("min_steps", self.min_steps, integer=True, low=1)
        number("eta", self.eta, integer=True, low=2)
        number("rungs", self.rungs, integer=True, low=1, high=8)
        number("bracket_size", self.bracket_size, integer=True, low=1, optional=True)
        number("pilot_valid", self.pilot_valid, integer=True, low=1)
        number("seed", self.seed, integer=True, low=0, high=2**31 - 1)
        number("brackets", self.brackets, integer=True, low=1, optional=True)
        if self.clock not in ("wall", "cpu"):
            raise LoralabError(f"invalid --budget-clock {self.clock!r}: expected wall or cpu")
        if not self.candidates:
            raise LoralabError("recommend needs at least one candidate (model x strategy)")
        if not self.base.valid:
            raise LoralabError("recommend needs a validation file (--valid): pilots are compared on it")
        if not isinstance(self.worker, str) or not self.worker.replace("-", "").replace("_", "").isalnum():
            raise LoralabError(f"invalid --worker {self.worker!r}: expected letters, digits, - and _")

    def plan(self) -> dict[str, Any]:
        """What a resumed search must share with the one it continues (the budget may grow)."""
        return json.loads(json.dumps({
            "base": self.base.to_dict(),
            "candidates": [[c.model, c.strategy.value, list(c.lr_range)] + ([c.method] if c.method else [])
                           + [c.plan()] for c in self.candidates],
            "memory_mb": self.memory_mb, "min_steps": self.min_steps, "eta": self.eta, "rungs": self.rungs,
            "bracket_size": self.bracket_size, "pilot_valid": self.pilot_valid, "seed": self.seed,
            "clock": self.clock} | ({"grid": True} if self.grid else {})))
