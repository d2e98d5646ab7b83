"""One method's bracket of successive halving: which of its settings enter each rung, and its best setting.

Every method has a bracket of its own, so its settings compete only with each other: a method that
learns slowly (VeRA, IA3, a LoRA starting from B = 0) is never pruned because another method's pilots
learned faster in the same few steps. The rules are recommend's (`recommendation.halving`):

    rung k: steps r0 * eta**k, survivors max(1, floor(entrants / eta))

and the best setting is recommend's verdict (`recommendation.verdict.choose`): the best pilot at the
largest step count any of the method's pilots reached. Three rules are compare's own: the first rung may
be cut short by the budget (its settings are ordered so that any first few span the learning-rate
bracket, `methods.spread`); a rung that would hold a single setting is not run (it decides nothing;
the final runs score that setting on all the data anyway); and pilots that a rung scored alike are told
apart by their validation loss (`loss`, `metrics.validation_loss`), never by the settings' order. At a
few steps a classifier's pilots often all predict the majority class (CoLA's Matthews correlation 0.000
for every pilot at 16 steps); cutting that tie by the order would prune at random, and carrying every
tied pilot on (`keep_ties`, the rule before losses were recorded, which still holds for pilots without
one) spent a filled bracket's share on its second rung: 44 of 44 full fine-tuning pilots went on where
14 were planned, and the bracket stopped before its third rung.

A bracket's shape is either given (`--bracket-size`, `--rungs`) or fills the method's share (`fill`): the
deepest ladder of rungs, r0 * eta**k up to the final run's length, whose pilots fit in what the share
leaves after the final runs, then as many settings as still fit. Such a bracket keeps at least two
settings in every rung (`least`), so its last rung still compares: a setting picked from pilots a tenth
as long as the final run need not carry over to it (on all of CoLA, LoRA's pick of 144-step pilots, lr
3e-3, predicted the majority class after the final run's 1,362 steps, with 86% of its share unspent).

A pilot that reaches a bracket's last rung (when it has more than one) trains with `last_seeds` seeds, and its
score there is their mean (`seeds_at`): the verdict picks from that rung, and a setting picked from one seed
can be one that trains in some seeds only. On STS-B, LoRA's pick (lr 1.8e-3, all-linear) scored 0.819 and
0.826 Pearson in two final runs and 0.091 in the third, whose loss never left the labels' variance; full
fine-tuning's three finals were within 0.015 of each other.

A rung whose survivors all share one learning rate (within a factor of `SAME`) gives its last place to the best
entrant at a rate at most 1/`HEDGE` of theirs (`hedge`): a short pilot favours a high rate, which can lead and
then collapse, and two settings that differ only in alpha at one rate compare that rate with itself. On all
of CoLA, LoRA's two best 144-step pilots (lr 3.2e-3, r 16, alpha 16 and 32; Matthews 0.168 and 0.137 on 200
dev sentences) were the only settings of the 432- and 1,362-step rungs and predicted the majority class in
both, and so did the final runs (`cola-all-seeded`). A wider trigger (survivors within a factor of 2)
replayed on the pilots of the 14 earlier comparisons displaced the final pick in 9 brackets (8 that learned);
this one fires in none of them.

Everything here is decided from the pilots' scores alone (`score(index, steps)`: None for a pilot not
run), so a resumed comparison plans exactly the runs it planned before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from loralab.comparison.methods import Method, label
from loralab.recommendation.halving import bracket_cost, rung_steps, survivors
from loralab.recommendation.verdict import Pilot, Verdict, choose

MOST = 64
"""The most settings a bracket starts with."""
FILLED_LEAST = 2
"""Survivors every rung of a bracket that fills its share keeps at the least."""
SAME = 1.25
"""Survivors whose learning rates all lie within this factor share one rate (`hedge`)."""
HEDGE = 2.0
"""A rung whose survivors share one rate keeps a place for a rate at least this much lower (`hedge`)."""

Score = Callable[[int, int], "float | None"]
"""(setting index, steps) -> the pilot's score (NaN: it diverged), or None when it has not run."""
Loss = Callable[[int, int], "float | None"]
"""(setting index, steps) -> the pilot's validation loss, or None when it has none (not run, diverged, or
recorded before losses were)."""


@dataclass(frozen=True)
class Bracket:
    """A method's settings and rungs."""

    method: Method
    settings: tuple[dict[str, Any], ...]
    steps: tuple[int, ...]
    """Optimizer steps of each rung."""
    eta: int
    higher_is_better: bool = True
    keep_ties: bool = True
    """Pilots tied with a rung's last survivor go on too (False: the settings' order breaks the tie, as
    comparisons planned before this rule did)."""
    least: int = 1
    """Survivors a rung keeps at the least (`FILLED_LEAST` in a bracket that fills its share, see `fill`)."""
    last_seeds: int = 1
    """Seeds each pilot of the last rung trains with, when the bracket has more than one rung."""
    caps: tuple[tuple[int, int], ...] = ()
    """(rung, most entrants) pairs: rungs trimmed so that the bracket's last rung still fits its share (`trim`)."""
    hedge: bool = False
    """A rung of several survivors at one rate keeps a lower one (`hedge`); False in a folder planned before that
    rule."""

    @classmethod
    def of(cls, method: Method, size: int, min_steps: int, eta: int, rungs: int, higher_is_better: bool = True,
           final_steps: int | None = None, keep_ties: bool = True, per_choice: bool = True, last_seeds: int = 1,
           hedge: bool = False):
        """`final_steps`: no pilot trains longer than a final run; the rung that reaches it is the last.
        `per_choice`: the settings' order (`Method.settings`)."""
        steps = rung_steps(min_steps, eta, rungs)
        if final_steps is not None:
            capped = [s for s in steps if s < final_steps]
            steps = tuple(capped + [final_steps]) if len(capped) < len(steps) else steps
        return cls(method, tuple(method.settings(size, per_choice)), steps, eta, higher_is_better, keep_ties,
                   last_seeds=last_seeds, hedge=hedge)

    def folder(self, index: int, steps: int, seed: int | None = None) -> str:
        """A pilot's run folder, relative to the comparison's folder (`seed`: one of the last rung's seeds after
        the first, which trains in the pilot's own folder)."""
        tail = "" if seed is None else f"-seed-{seed}"
        return f"pilots/{self.method.name}/{index:02d}_{label(self.settings[index])}/steps-{steps}{tail}"

    def seeds_at(self, steps: int) -> int:
        """Seeds a pilot of `steps` trains with: `last_seeds` at the last rung of a bracket of several, else one."""
        return self.last_seeds if len(self.steps) > 1 and steps == self.steps[-1] else 1

    def entrants(self, rung: int, score: Score, loss: Loss | None = None) -> list[int] | None:
        """The settings entering `rung`, best first after the first rung (by score, then by validation loss
        when `loss` is given; a hedged lower rate last); None when the rung is not run (the one before it was cut
        short by the budget, or left a single setting)."""
        chosen = self._chosen(rung, score, loss)
        return None if chosen is None else chosen[0]

    def hedges(self, score: Score, loss: Loss | None = None) -> dict[int, int]:
        """Rung steps -> the setting that entered that rung for its lower rate (`hedge`), in place of a
        better-ranked one."""
        chosen = {self.steps[r]: self._chosen(r, score, loss) for r in range(1, len(self.steps))}
        return {steps: c[1] for steps, c in chosen.items() if c is not None and c[1] is not None}

    def _chosen(self, rung: int, score: Score, loss: Loss | None) -> tuple[list[int], int | None] | None:
        if rung == 0:
            return list(range(len(self.settings))), None
        if rung >= len(self.steps):
            return None
        before = self.entrants(rung - 1, score, loss)
        if before is None:
            return None
        steps = self.steps[rung - 1]
        ran = [i for i in before if score(i, steps) is not None]  # `ran(rung - 1)`, without asking again
        if (rung > 1 and len(ran) < len(before)) or len(ran) <= 1:
            return None

        def rank(i: int) -> tuple[float, float]:
            return self._badness(score(i, steps)), _known(loss(i, steps) if loss else None)

        ranked = sorted(ran, key=lambda i: (rank(i), i))
        keep = survivors(len(ran), self.eta, self.least)
        if self.keep_ties:
            last = rank(ranked[keep - 1])
            while keep < len(ranked) and rank(ranked[keep]) == last and last[0] != math.inf:
                keep += 1
        kept = ranked[:min(keep, dict(self.caps).get(rung, keep))]
        lower = self._lower(kept, [i for i in ranked[len(kept):] if rank(i)[0] != math.inf]) if self.hedge else None
        return (kept, None) if lower is None else (kept[:-1] + [lower], lower)

    def _lower(self, kept: list[int], rest: list[int]) -> int | None:
        """The best of `rest` at a rate at most 1/HEDGE of the lowest kept rate, where two or more `kept` settings
        share one rate (within a factor of SAME); else None."""
        rates = [float(self.settings[i].get("lr", 0.0)) for i in kept]
        if len(kept) < 2 or min(rates) <= 0 or max(rates) >= SAME * min(rates):
            return None
        return next((i for i in rest if float(self.settings[i].get("lr", 0.0)) * HEDGE <= min(rates)), None)

    def rest_cost(self, rung: int, entrants: int, pilot_cost: Callable[[int], float]) -> float:
        """What `rung` with `entrants` settings and every rung after it cost, each keeping `survivors` of the one
        before (`pilot_cost(steps)`: one pilot, one seed)."""
        total, alive = 0.0, entrants
        for steps in self.steps[rung:]:
            total += alive * self.seeds_at(steps) * pilot_cost(steps)
            alive = survivors(alive, self.eta, self.least)
        return total

    def trim(self, rung: int, entrants: int, pilot_cost: Callable[[int], float],
             fits: Callable[[float], bool]) -> int | None:
        """The most settings (fewer than `entrants`, at least `least`) that `rung` can take so that it and every
        rung after it fit (`fits(cost)`, the cost from `rest_cost`), when all `entrants` would not; None when they
        would, or when not even the fewest would. Depth comes first, as in `fill`: pilots that cost more than the
        first pilot's step measured when the bracket was shaped trim a middle rung, so the last rung still runs
        (on science-exam, full fine-tuning's 250-step rung missed its share by 13 s after three 48-step pilots
        where two would have left room for it)."""
        if fits(self.rest_cost(rung, entrants, pilot_cost)):
            return None
        return next((n for n in range(entrants - 1, self.least - 1, -1)
                     if fits(self.rest_cost(rung, n, pilot_cost))), None)

    def ran(self, rung: int, score: Score, loss: Loss | None = None) -> list[int]:
        """The entrants of `rung` that have a score there."""
        return [i for i in self.entrants(rung, score, loss) or [] if score(i, self.steps[rung]) is not None]

    def pilots(self, score: Score, loss: Loss | None = None) -> list[Pilot]:
        """Every setting that ran, as recommend's verdict sees a trial: its score (and validation loss) at
        each rung it reached."""
        out, last = [], self.last_steps(score, loss)
        for i, settings in enumerate(self.settings):
            values = {s: v for s in self.steps if (v := score(i, s)) is not None}
            if values:
                losses = {s: v for s in values if loss and (v := loss(i, s)) is not None}
                state = "complete" if max(values) == last else "pruned"
                out.append(Pilot(i, self.method.name, self.method.fixed.get("strategy", ""), dict(settings), values,
                                 state, None, losses))
        return out

    def last_steps(self, score: Score, loss: Loss | None = None) -> int | None:
        """The step count of the last rung any setting reached."""
        reached = [s for k, s in enumerate(self.steps) if self.ran(k, score, loss)]
        return max(reached) if reached else None

    def best(self, score: Score, metric: str, examples: int, loss: Loss | None = None) -> Verdict | None:
        """The method's best setting (recommend's verdict on its own pilots); None when none scored."""
        return choose(self.pilots(score, loss), metric, examples, lambda p: None)

    def _badness(self, value: float | None) -> float:
        if value is None or math.isnan(value):
            return math.inf
        return -value if self.higher_is_better else value


def _known(loss: float | None) -> float:
    """A validation loss as a sort key: one that is unknown sorts last and ties with every other unknown."""
    return math.inf if loss is None or not math.isfinite(loss) else loss


def ladder(min_steps: int, eta: int, final_steps: int) -> tuple[int, ...]:
    """Every rung a bracket may reach: r0 * eta**k, then a final run's length. A rung within a factor of
    sqrt(eta) of the final length gives way to it (1,296 steps before a final run of 1,362 would compare the
    same two settings twice at nearly the same length); the first rung always stays."""
    steps, k = [], 0
    while min_steps * eta**k < final_steps and (k == 0 or (min_steps * eta**k) ** 2 * eta <= final_steps**2):
        steps.append(min_steps * eta**k)
        k += 1
    return tuple(steps + [final_steps])


def fill(available: float | Callable[[int, int], float], rung_costs: tuple[float, ...], eta: int, fewest: int = 6,
         most: int = MOST, last_seeds: int = 1) -> tuple[int, int, int]:
    """(settings, rungs, seeds of the last rung) of the bracket that fills `available` seconds: the most rungs
    (of `rung_costs`, the cost of one pilot at each rung of `ladder`) through which `fewest` settings fit
    with one seed, then `last_seeds` seeds at its last rung (of several) where `fewest` settings still fit
    so, then as many settings (up to `most`) as fit. Depth comes first: a last rung far shorter than the
    final run is the larger risk (a pick from 144-step pilots failed a 1,362-step final run on CoLA), and
    a second seed that would cost a rung is not taken. `available` may depend on the shape: (rungs, seeds of
    the last rung) -> seconds (a last rung of the final run's length trains final runs, which the share then
    need not keep for). When not even the first rung of `fewest` fits: (fewest, 1, 1), the first rung
    alone, which the budget cuts short as it does a given bracket's."""
    room = available if callable(available) else (lambda rungs, seeds: available)
    for rungs in range(len(rung_costs), 0, -1):
        plain = rung_costs[:rungs]
        if bracket_cost(fewest, plain, eta, FILLED_LEAST) > room(rungs, 1):
            continue
        seeded = plain[:-1] + (plain[-1] * last_seeds,) if rungs > 1 else plain
        seeds = last_seeds if rungs > 1 and bracket_cost(fewest, seeded, eta, FILLED_LEAST) <= room(rungs, last_seeds) else 1
        costs, space = (seeded if seeds > 1 else plain), room(rungs, seeds)
        settings = fewest
        while settings < most and bracket_cost(settings + 1, costs, eta, FILLED_LEAST) <= space:
            settings += 1
        return settings, rungs, seeds
    return fewest, 1, 1
