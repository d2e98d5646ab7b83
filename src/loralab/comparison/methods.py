"""The fine-tuning methods `compare` knows: what each one is as run settings, and the settings its own
bracket tries.

Each method gets its own learning-rate bracket, centred on the rates that worked for it on the
science exam (`experiments/results/methods-epoch/summary.md`: LoRA 1e-3, DoRA 3e-3, LoRA+ 3e-4 at
ratio 16, PiSSA and OLoRA 1e-3 but not 3e-3, VeRA and IA3 3e-2 but not VeRA at 1e-1), and the
settings that decide how well it does: rank, alpha and targets (query and value, or every linear
layer) for the LoRA family, LoRA+'s ratio of B's rate to A's. The fewer and smaller the numbers that
train, the larger the step they need, so a bracket shared by all methods would judge most of them at
rates they cannot learn at.

A bracket's settings are a fixed, deterministic list (so a resumed comparison plans the same runs):
the i-th setting's rate is at fraction `spread(i)` of the bracket on a log scale (the middle first,
then both ends, then halves in between), and its other settings cycle through their choices, so any
first few settings already span the bracket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loralab.errors import LoralabError

QV, ALL_LINEAR = ("query", "value"), ("all-linear",)


@dataclass(frozen=True)
class Method:
    """One fine-tuning method: the run settings that make it, its learning-rate bracket and what else it tries."""

    name: str
    fixed: dict[str, Any]
    """Run settings, by experiment key, that make this method (strategy, use_dora, lora_init, ...)."""
    lr_range: tuple[float, float]
    """(lowest, highest) learning rate tried, on a log scale."""
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Other settings tried, by experiment key, each cycled through its values."""

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


_LORA = {"lora_targets": (QV, ALL_LINEAR), "lora_r": (8, 16), "lora_alpha": (16, 32)}
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("full", {"strategy": "full"}, (3e-5, 3e-4)),
    Method("attention", {"strategy": "attention"}, (3e-5, 3e-4)),
    Method("qv", {"strategy": "qv"}, (3e-5, 3e-4)),
    Method("lora", {"strategy": "lora"}, (3e-4, 3e-3), _LORA),
    # alpha / sqrt(r) is sqrt(r) times LoRA's alpha / r: the same update at about a third of the rate.
    Method("rslora", {"strategy": "lora", "rslora": True}, (1e-4, 1e-3), _LORA),
    Method("dora", {"strategy": "lora", "use_dora": True}, (5e-4, 5e-3), _LORA),
    # B moves `ratio` times faster than A: the base rate sits below LoRA's.
    Method("lora+", {"strategy": "lora"}, (1e-4, 1e-3), {"lora_plus_ratio": (16.0, 4.0), **_LORA}),
    # Starting from the weight's principal directions, a large step undoes them (3e-3 stayed at ln 5).
    Method("pissa", {"strategy": "lora", "lora_init": "pissa"}, (1e-4, 1e-3), _LORA),
    Method("olora", {"strategy": "lora", "lora_init": "olora"}, (1e-4, 1e-3), _LORA),
    Method("vera", {"strategy": "vera"}, (1e-2, 1e-1), {"vera_targets": (QV, ALL_LINEAR)}),
    Method("ia3", {"strategy": "ia3"}, (1e-2, 1e-1)),
    # GaLore scales its projected update by 0.25: about four times full fine-tuning's rate.
    Method("galore", {"strategy": "galore"}, (1e-4, 1e-3)),
)}


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

