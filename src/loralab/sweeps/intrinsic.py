"""The intrinsic dimension of a task: the smallest subspace in which training still works.

Train in random subspaces of growing dimension d and score each. The intrinsic dimension d_int90
is the smallest d whose score reaches 90% of the baseline, the score of training all weights
directly (Li et al. 2018, "Measuring the Intrinsic Dimension of Objective Landscapes", Sec. 2):

    d_int90 = min { d : score(d) >= 0.9 * baseline }

Training is the expensive part, so the search spends few evaluations: a coarse log-spaced grid of
d finds where the score crosses the threshold, then bisection on a grid of step `resolution`
narrows the bracket. It assumes the score grows with d; under noise it reports the smallest d
that was seen to reach the threshold. Nothing here knows what is trained: `score` is any callable.
The result's record, page and plot are written by `reports.intrinsic.write_intrinsic`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from loralab.errors import LoralabError
from loralab.reports.intrinsic import IntrinsicResult
from loralab.validate import number


@dataclass(frozen=True)
class SearchConfig:
    """Where and how finely to look for d_int90."""

    d_min: int = 10
    """Smallest d of the coarse grid."""
    d_max: int = 10_000
    """Largest d of the coarse grid."""
    per_decade: int = 4
    """Coarse grid points per factor of 10 in d."""
    fraction: float = 0.9
    """The threshold as a fraction of the baseline score (0.9 gives d_int90)."""
    resolution: int = 10
    """Bisection stops once the bracket around the crossing is this narrow, and probes multiples of it."""
    after_crossing: int = 1
    """Coarse points still scored past the first one that reaches the threshold, to show the curve flatten."""

    def __post_init__(self):
        for name in ("d_min", "d_max", "per_decade", "resolution"):
            number(name, getattr(self, name), integer=True, low=1)
        if self.d_max < self.d_min:
            raise LoralabError(f"invalid d_max={self.d_max}: below d_min={self.d_min}")
        number("fraction", self.fraction, low=0, low_open=True, high=1)
        number("after_crossing", self.after_crossing, integer=True, low=0)

    def grid(self) -> tuple[int, ...]:
        """The coarse grid: d_min, then per_decade points per decade up to and including d_max."""
        steps = math.ceil(math.log10(self.d_max / self.d_min) * self.per_decade)
        points = {round(self.d_min * 10 ** (i / self.per_decade)) for i in range(steps)}
        return tuple(sorted(points | {self.d_max}))


def find_intrinsic_dim(
    score: Callable[[int], float],
    baseline: float,
    config: SearchConfig = SearchConfig(),
    *,
    on_point: Callable[[int, float], None] | None = None,
) -> IntrinsicResult:
    """Search d for the smallest subspace whose `score(d)` reaches `config.fraction * baseline`.

    `score` trains in a d-dimensional subspace and returns a higher-is-better metric; each d is
    scored at most once. `on_point(d, score)` is called after each evaluation (logging, saving).
    """
    threshold = config.fraction * baseline
    scores: dict[int, float] = {}

    def evaluate(d: int) -> float:
        if d not in scores:
            scores[d] = float(score(d))
            if on_point is not None:
                on_point(d, scores[d])
        return scores[d]

    crossing, extra = None, 0
    for d in config.grid():
        if crossing is not None:
            if extra >= config.after_crossing:
                break
            extra += 1
        if evaluate(d) >= threshold and crossing is None:
            crossing = d

    if crossing is not None:
        below = [d for d in scores if d < crossing]
        lo, hi = (max(below), crossing) if below else (None, crossing)
        while lo is not None and hi - lo > config.resolution:
            mid = _probe(lo, hi, config.resolution)
            if mid is None:
                break
            if evaluate(mid) >= threshold:
                hi = mid
            else:
                lo = mid

    reached = [d for d, s in scores.items() if s >= threshold]
    d_int = min(reached) if reached else None
    missed = [d for d, s in scores.items() if d_int is not None and d < d_int]
    return IntrinsicResult(
        points=tuple(sorted(scores.items())),
        baseline=float(baseline),
        fraction=config.fraction,
        d_int=d_int,
        lower=max(missed) if missed else None,
    )


def _probe(lo: int, hi: int, resolution: int) -> int | None:
    """A multiple of `resolution` strictly inside (lo, hi), near their geometric mean; None if none is."""
    target = math.sqrt(lo * hi)
    candidates = [math.floor(target / resolution) * resolution, math.ceil(target / resolution) * resolution]
    inside = [c for c in candidates if lo < c < hi]
    if inside:
        return min(inside, key=lambda c: abs(c - target))
    first = (lo // resolution + 1) * resolution
    return first if first < hi else None

