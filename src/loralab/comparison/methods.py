"""The fine-tuning methods `compare` knows (`loralab.settings.methods`, shared with `recommend`), and the
settings each one's bracket tries.

A bracket's settings are a fixed, deterministic list (so a resumed comparison plans the same runs): its
other settings cycle through their combinations (the first choice fastest), and the i-th setting's rate
sits at fraction `spread(i)` of the bracket on a log scale for the first round of combinations (the middle
first, then both ends, then halves in between), so any first few settings already span the bracket. Each
later visit to a combination rotates its first point by the van der Corput point of the visit
(`position`), so every combination's rates cover the whole range; a setting equal to an earlier one (two
figures of the rate) is skipped.

Before that rule (`per_choice=False`, kept for comparisons planned with it) the rate followed `spread(i)`
across all settings, and a combination revisited every 2**k settings got points that differ only in
their low bits: in a 64-setting LoRA bracket (8 combinations) each combination's rates sat within an
eighth of the range, VeRA's two target sets in opposite halves, and settings repeated (a 1,362-step
CoLA pilot run twice with the same settings).
"""

from __future__ import annotations

import math
from typing import Any

from loralab.errors import LoralabError
from loralab.settings.methods import METHODS as SHARED, Method as SharedMethod, targets


class Method(SharedMethod):
    """A method of `loralab.settings.methods` as `compare` brackets it: its target choices are the targets
    they adapt (run settings), and `settings(n)` is its bracket."""

    def settings(self, n: int, per_choice: bool = True) -> list[dict[str, Any]]:
        """The first `n` settings of this method's bracket (learning rate first, then its choices); fewer
        when the method has fewer distinct ones. `per_choice` False: the order before each combination's
        rates were spread (see the module's text), repeats included."""
        if not per_choice:
            return [self._setting(i, spread(i)) for i in range(n)]
        combos = math.prod(len(values) for values in self.choices.values())
        out: list[dict[str, Any]] = []
        for i in range(64 * max(n, 1)):  # a bound: repeats are skipped, and a narrow range has few settings
            if len(out) == n:
                break
            settings = self._setting(i, position(i, combos))
            if settings not in out:
                out.append(settings)
        return out

    def _setting(self, i: int, at: float) -> dict[str, Any]:
        """The i-th setting: its rate at fraction `at` of the range on a log scale (two figures: readable
        folder names), its other settings cycling through their choices, the first fastest."""
        low, high = self.lr_range
        settings: dict[str, Any] = {"lr": float(f"{low * (high / low) ** at:.2g}")}
        stride = 1
        for key, values in self.choices.items():
            settings[key] = values[(i // stride) % len(values)]
            stride *= len(values)
        return settings


def position(i: int, combos: int) -> float:
    """Where the i-th setting's rate sits in [0, 1] when its other settings cycle through `combos`
    combinations: `spread(i)` in the first round (and for the first three settings: the middle, then both
    ends); the m-th visit to combination c after it, c's first point rotated by the van der Corput point of
    m (0.5, 0.25, 0.75, ...), so each combination spans the range."""
    c, m = i % combos, i // combos
    if combos == 1 or i < max(combos, 3):
        return spread(i)
    return (spread(c) + corput(m)) % 1.0


def corput(k: int) -> float:
    """The van der Corput point of k in base 2: 0, 0.5, 0.25, 0.75, 0.125, ..."""
    x, base = 0.0, 0.5
    while k:
        x += base * (k & 1)
        k >>= 1
        base /= 2
    return x


def spread(i: int) -> float:
    """Where the i-th point sits in [0, 1]: 0.5, 0, 1, then the van der Corput points 0.25, 0.75, 0.125, ..."""
    return (0.5, 0.0, 1.0)[i] if i < 3 else corput(i - 1)


METHODS: dict[str, Method] = {m.name: Method(m.name, m.fixed, m.lr_range,
                                              {k: tuple(targets(k, v) for v in values) for k, values in m.choices.items()})
                                 for m in SHARED.values()}


def parse_methods(names: tuple[str, ...] | list[str]) -> tuple[Method, ...]:
    """The methods named, in the order given; an unknown or repeated name is refused in one line."""
    if not names:
        raise LoralabError("--methods: expected at least one method")
    out = []
    for name in names:
        if name not in METHODS:
            raise LoralabError(f"--methods: unknown method {name!r}; choose from {', '.join(METHODS)}")
        if METHODS[name] in out:
            raise LoralabError(f"--methods: {name} is named twice")
        out.append(METHODS[name])
    return tuple(out)


def label(settings: dict[str, Any]) -> str:
    """Settings as a folder name: 'lr-0.001_lora_targets-all-linear_lora_r-8'."""
    parts = []
    for key, value in settings.items():
        if isinstance(value, (tuple, list)):
            value = "+".join(value)
        elif isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{key}-{value}")
    return "_".join(parts)

