"""A comparison's budget: split evenly between the methods, and what each has spent and expects to spend.

What was spent is recommend's ledger (`recommendation.ledger`): one JSON line per pilot and final
run, the method as its candidate, so a comparison killed and rerun knows what it already spent. A
method's share pays for its pilots and its final runs: a pilot starts only while the method's
spending, the pilot's expected cost and the reserve for its final runs fit in its share. The
first pilot of each method always runs (it measures what a step of that method costs); the final runs
always run (their cost was reserved, and a comparison without them says nothing). What the process
spends outside the runs (reading the data, planning) is charged to the total, not to a method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loralab.recommendation.ledger import Ledger


@dataclass
class Budget:
    """The seconds of a comparison: its total, each method's share, and the ledger of what was spent."""

    total: float
    methods: tuple[str, ...]
    ledger: Ledger
    final_steps: int
    """Optimizer steps of a final run (all the training data)."""
    seeds: int
    valid_share: float
    """How many times more validation examples a final run scores than a pilot."""

    def share(self, method: str) -> float:
        return self.total / len(self.methods)

    def spent(self, method: str | None = None, kind: str | None = None) -> float:
        """Seconds spent, by one method (None: everything, the process's own time included) and kind."""
        return sum(self.ledger.cost(e) for e in self.ledger.entries.values()
                   if (method is None or e.get("candidate") == method) and (kind is None or e["kind"] == kind))

    def finals_started(self, method: str) -> bool:
        """Whether any of the method's final runs has finished (its search is closed then)."""
        return any(e.get("candidate") == method and e["kind"] == "final" for e in self.ledger.entries.values())

    def finals_done(self, method: str) -> int:
        """How many of the method's final runs have finished."""
        return sum(1 for e in self.ledger.entries.values() if e.get("candidate") == method and e["kind"] == "final")

    def step_cost(self, method: str) -> float | None:
        return self.ledger.step_cost(method)

    def _overhead(self, kind: str) -> float:
        """Seconds a run spends outside its steps (loading the model, scoring): the largest seen."""
        pilot = self.ledger.overhead("pilot") or 0.0
        if kind == "final":
            return self.ledger.overhead("final") or pilot * max(1.0, self.valid_share)
        return pilot

    def pilot_cost(self, method: str, steps: int) -> float:
        return (self.step_cost(method) or 0.0) * steps + self._overhead("pilot")

    def final_reserve(self, method: str, trained: int = 0) -> float:
        """What the method's final runs not yet done are expected to cost; `trained` of them trained by pilots
        (the last rung's, at the final run's length: `runs.rescore`), which cost their scoring only."""
        left = max(0, self.seeds - self.finals_done(method))
        rescored = min(trained, left)
        return ((left - rescored) * (self.step_cost(method) or 0.0) * self.final_steps
                + left * self._overhead("final"))

    def affords(self, method: str, cost: float, trained: int = 0) -> bool:
        """Whether the method's share holds what it spent, `cost` more, and its final runs (`trained` of them
        by the pilots that `cost` pays for)."""
        return self.spent(method) + cost + self.final_reserve(method, trained) <= self.share(method)

    def left(self, method: str) -> float:
        return self.share(method) - self.spent(method)

    def summary(self) -> dict:
        """The split and what was spent, for compare.json."""
        per = {m: {"share_seconds": round(self.share(m), 1), "pilot_seconds": round(self.spent(m, "pilot"), 1),
                   "final_seconds": round(self.spent(m, "final"), 1), "spent_seconds": round(self.spent(m), 1)}
               for m in self.methods}
        total = self.spent()
        return {"budget_seconds": round(self.total, 1), "clock": self.ledger.clock, "per_method": per,
                "search_seconds": round(self.spent(kind="search"), 1), "spent_seconds": round(total, 1),
                "over_budget": total > self.total and not math.isclose(total, self.total)}
