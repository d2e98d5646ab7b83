"""The verdict: which pilot won, and which rivals it cannot be told apart from.

The winner is the best pilot at the largest step count any pilot reached (of pilots that score alike, the
one with the lower validation loss where both are known, else the earlier). At every step count the
winner reached, each other pilot scored there is compared with it; a rival is *within noise* when
the difference is under twice the standard error of a difference of two scores on the pilots'
validation examples,

    noise = 2 * sqrt(se(winner)**2 + se(rival)**2),    se(m) <= sqrt(m (1 - m) / n)

and the cheapest rival within noise whose full run is expected to cost under 90% of the winner's is
named, for a reader to whom cost matters more than a difference the search cannot resolve.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from loralab.reports.rows import higher_is_better


@dataclass(frozen=True)
class Pilot:
    """One trial as the verdict and the report see it: its candidate, settings, score at each step and cost."""

    number: int
    candidate: str
    strategy: str
    settings: dict[str, Any]
    values: dict[int, float]
    state: str
    step_seconds: float | None
    """Median step time measured in its pilots."""
    losses: dict[int, float] = dataclasses.field(default_factory=dict)
    """Its validation loss at each step count where it is known: what breaks a tie of scores."""


def sampling_se(value: float, n: int) -> float:
    """Standard error of a mean over n examples of a score in [0, 1] (MAP@3, accuracy): at most
    sqrt(m (1 - m) / n), the bound reached when every example scores 0 or 1; other scores: 1 / sqrt(n)."""
    if 0.0 <= value <= 1.0:
        return math.sqrt(max(value * (1.0 - value), 1e-12) / n)
    return 1.0 / math.sqrt(n)


Comparison = tuple[Pilot, float, float, bool]
"""(pilot, its difference from the winner, the noise threshold, within noise)."""


@dataclass(frozen=True)
class Verdict:
    """The winner among the pilots and how it compares with the others at each step count it reached."""

    winner: Pilot
    steps: int
    """The step count the winner was chosen at: the largest any pilot reached."""
    comparisons: dict[int, list[Comparison]]
    """Step count -> every other pilot scored there, best first."""
    cheaper: Pilot | None
    """The cheapest rival within noise of the winner whose full run is expected to cost less, if any."""

    @property
    def rivals(self) -> list[Comparison]:
        """The comparisons at the largest step count where the winner had a rival."""
        for steps in sorted(self.comparisons, reverse=True):
            if self.comparisons[steps]:
                return self.comparisons[steps]
        return []


def choose(found: list[Pilot], metric: str, examples: int,
           expected_cost: Callable[[Pilot], float | None]) -> Verdict | None:
    """The best pilot at the largest step count any pilot reached, compared with the others at every
    step count it reached, each score a mean over `examples` validation examples; `expected_cost` is
    what a full run of a pilot's candidate is expected to cost (None: unknown)."""
    scored = [p for p in found if any(math.isfinite(v) for v in p.values.values())]
    if not scored:
        return None
    top = max(s for p in scored for s, v in p.values.items() if math.isfinite(v))
    sign = 1 if higher_is_better(metric) else -1
    winner = sorted((p for p in scored if math.isfinite(p.values.get(top, math.nan))),
                    key=lambda p: (-sign * p.values[top], p.losses.get(top, math.inf), p.number))[0]
    comparisons: dict[int, list[Comparison]] = {}
    for steps, mine in sorted(winner.values.items()):
        others = sorted((p for p in scored if p is not winner and math.isfinite(p.values.get(steps, math.nan))),
                        key=lambda p: (-sign * p.values[steps], p.number))
        comparisons[steps] = []
        for p in others:
            diff = p.values[steps] - mine
            threshold = 2 * math.hypot(sampling_se(mine, examples), sampling_se(p.values[steps], examples))
            comparisons[steps].append((p, diff, threshold, abs(diff) < threshold))
    verdict = Verdict(winner, top, comparisons, None)
    mine = expected_cost(winner)
    cheaper = [p for p, _, _, within in verdict.rivals
               if within and mine is not None and (expected_cost(p) or math.inf) < 0.9 * mine]
    return dataclasses.replace(verdict, cheaper=min(cheaper, key=expected_cost) if cheaper else None)
