"""Successive halving (Jamieson & Talwalkar 2016; Hyperband's inner loop, Li et al. 2018), as an Optuna pruner.

A bracket starts n candidates' settings at the smallest budget r0 (optimizer steps); after each
rung only the best 1/eta go on, with eta times the steps:

    rung k: steps r0 * eta**k, survivors max(1, floor(n_k / eta))

A bracket's size is chosen to fit what its method may spend (`bracket_shape`): the most settings
whose pilots, rung by rung, fit in that share.

Optuna's own `SuccessiveHalvingPruner` is the asynchronous variant (ASHA): a trial is promoted as
soon as it is in the top 1/eta of those that reached the rung *so far*, so with one worker the first
trial has no rival and goes through every rung, however bad its learning rate. Here a bracket's
trials all report a rung before any is judged (`BracketPruner` is asked only then), so a rate that
cannot learn is compared with the others and stopped at the first rung.
"""

from __future__ import annotations

import math

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial

BRACKET = "bracket"  # the user attribute naming a trial's bracket


def rung_steps(min_steps: int, eta: int, rungs: int) -> tuple[int, ...]:
    """The optimizer steps of each rung: r0, r0 * eta, r0 * eta**2, ..."""
    return tuple(min_steps * eta**k for k in range(rungs))


def survivors(entrants: int, eta: int, least: int = 1) -> int:
    """How many of a rung's entrants go on to the next rung: a 1/eta of them, at least `least` (while there are)."""
    return min(max(entrants, 1), max(least, math.floor(entrants / eta)))


def bracket_cost(entrants: int, rung_costs: tuple[float, ...], eta: int, least: int = 1) -> float:
    """What a bracket of `entrants` settings costs when a pilot at rung k costs rung_costs[k] and each rung
    keeps `survivors(..., least)` of its entrants."""
    total, alive = 0.0, entrants
    for cost in rung_costs:
        total += alive * cost
        alive = survivors(alive, eta, least)
    return total


def bracket_shape(share: float, rung_costs: tuple[float, ...], eta: int, most: int) -> tuple[int, int]:
    """(entrants, rungs) of the largest bracket, up to `most` entrants, whose every rung fits in `share`;
    when not even one setting fits through every rung, one setting through as many rungs as fit;
    (0, 0) when not even one first-rung pilot fits."""
    for entrants in range(max(1, most), 0, -1):
        if bracket_cost(entrants, rung_costs, eta) <= share:
            return entrants, len(rung_costs)
    for rungs in range(len(rung_costs) - 1, 0, -1):
        if bracket_cost(1, rung_costs[:rungs], eta) <= share:
            return 1, rungs
    return 0, 0


LOSS = "valid_loss@"
"""A trial's user attribute LOSS + steps: its pilot's validation loss at that step count."""


class BracketPruner(BasePruner):
    """Prune a trial unless its value at its last reported step is among the best `survivors` of its
    bracket's trials that reported that step (ties go to the lower validation loss, the user attribute
    LOSS + step, then to the earlier trial)."""

    def __init__(self, eta: int = 3):
        self.eta = eta

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        bracket = trial.user_attrs.get(BRACKET)
        rivals = [t for t in study.get_trials(deepcopy=False)
                  if t.user_attrs.get(BRACKET) == bracket and step in t.intermediate_values]
        value = trial.intermediate_values[step]
        if math.isnan(value):
            return True
        sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
        ranked = sorted(rivals, key=lambda t: (_badness(t.intermediate_values[step], sign),
                                               t.user_attrs.get(f"{LOSS}{step}", math.inf), t.number))
        keep = {t.number for t in ranked[:survivors(len(rivals), self.eta)]}
        return trial.number not in keep


def _badness(value: float, sign: int) -> float:
    """Lower is better; a NaN (a diverged pilot, or one over the memory limit) is worst."""
    return math.inf if math.isnan(value) else -sign * value
