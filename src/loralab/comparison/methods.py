"""The fine-tuning methods `compare` knows (`loralab.settings.methods`, shared with `recommend`), and the
settings each one's bracket tries.

A bracket's settings are a fixed, deterministic list (so a resumed comparison plans the same runs):
the i-th setting's rate is at fraction `spread(i)` of the bracket on a log scale (the middle first,
then both ends, then halves in between), and its other settings cycle through their choices, so any
first few settings already span the bracket.
"""

from __future__ import annotations

from typing import Any

from loralab.errors import LoralabError
from loralab.settings.methods import METHODS as SHARED, Method as SharedMethod, targets


class Method(SharedMethod):
    """A method of `loralab.settings.methods` as `compare` brackets it: its target choices are the targets
    they adapt (run settings), and `settings(n)` is its bracket."""

    def settings(self, n: int) -> list[dict[str, Any]]:
        """The first `n` settings of this method's bracket (learning rate first, then its choices)."""
        low, high = self.lr_range
        out = []
        for i in range(n):
            lr = float(f"{low * (high / low) ** spread(i):.2g}")  # two figures: readable folder names
            settings: dict[str, Any] = {"lr": lr}
            stride = 1
            for key, values in self.choices.items():
                settings[key] = values[(i // stride) % len(values)]
                stride *= len(values)
            out.append(settings)
        return out


def spread(i: int) -> float:
    """Where the i-th point sits in [0, 1]: 0.5, 0, 1, then the van der Corput points 0.25, 0.75, 0.125, ..."""
    if i < 3:
        return (0.5, 0.0, 1.0)[i]
    k, x, base = i - 1, 0.0, 0.5  # van der Corput of 2, 3, ...: 0.25, 0.75, 0.125, 0.625, ...
    while k:
        x += base * (k & 1)
        k >>= 1
        base /= 2
    return x


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

