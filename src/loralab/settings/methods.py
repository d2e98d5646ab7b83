"""The fine-tuning methods, once for every command that judges them: what each is as run settings, the
learning rates it can learn at, and the other settings that decide how well it does.

`compare` searches each method inside its own bracket and `recommend` inside its own share of the
budget, both from this table, so a verdict about a method is about the method and not about a rate
picked for another. The fewer and smaller the numbers that train, the larger the step they need, so
one range shared by all methods would judge most of them at rates they cannot learn at.

The ranges are centred on rates measured to leave the ln 5 loss plateau within one epoch of
science-exam questions with MiniLM (`experiments/results/methods-epoch/summary.md`): LoRA 1e-3, DoRA
3e-3, LoRA+ 3e-4 at ratio 16, PiSSA and OLoRA 1e-3 (3e-3 stayed on the plateau), VeRA 3e-2 (1e-1
stayed), IA3 3e-2 (1e-2 stayed), GaLore 3e-4; full fine-tuning learns at 5e-5 to 1e-4. LoRA's update
starts at zero (B = 0) and is scaled by alpha / r, so its rates sit an order of magnitude above full
fine-tuning's; below about 3e-4, B grows too slowly from zero for a pilot of tens of steps to show
anything (the seed's LoRA at 1e-5 learned nothing, `experiments/results/seed-blog/`), but brackets that fill
their share run pilots of hundreds of steps, and LoRA's range spans 1e-4 to 1e-2: its best rates on GLUE sat
at both ends of 3e-4 to 3e-3. `compare` says when a method's best rate is the lowest or highest its bracket
tried (`rate_at_edge`).

The other settings searched: rank, alpha and targets (query and value, or every linear layer, best in
a hand sweep on ARC-Easy) for the LoRA family, LoRA+'s ratio of B's rate to A's, VeRA's targets.
Targets are named by their set (`TARGET_SETS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loralab.errors import LoralabError

TARGET_SETS: dict[str, tuple[str, ...]] = {"qv": ("query", "value"), "all-linear": ("all-linear",)}
"""A target set's name -> the targets it adapts."""


@dataclass(frozen=True)
class Method:
    """One fine-tuning method: the run settings that make it, its learning-rate range and what else it tries."""

    name: str
    fixed: dict[str, Any]
    """Run settings, by their key in the settings table, that make this method (strategy, use_dora, ...)."""
    lr_range: tuple[float, float]
    """(lowest, highest) learning rate tried, on a log scale."""
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Other settings tried, by key; targets by their set's name in `TARGET_SETS`."""

    @property
    def strategy(self) -> str:
        return self.fixed["strategy"]


_LORA = {"lora_targets": ("qv", "all-linear"), "lora_r": (8, 16), "lora_alpha": (16, 32)}
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("full", {"strategy": "full"}, (3e-5, 3e-4)),
    Method("attention", {"strategy": "attention"}, (3e-5, 3e-4)),
    Method("qv", {"strategy": "qv"}, (3e-5, 3e-4)),
    # Two decades around 1e-3: on GLUE (a new head trained with the adapter) the range 3e-4 to 3e-3 gave three
    # best rates at 3e-3 (SST-2, MRPC, all of CoLA) and one at 3e-4 (RTE), each the edge of what was tried.
    Method("lora", {"strategy": "lora"}, (1e-4, 1e-2), _LORA),
    # alpha / sqrt(r) is sqrt(r) times LoRA's alpha / r: the same update at about a third of the rate.
    Method("rslora", {"strategy": "lora", "rslora": True}, (1e-4, 1e-3), _LORA),
    Method("dora", {"strategy": "lora", "use_dora": True}, (5e-4, 5e-3), _LORA),
    # B moves `ratio` times faster than A: the base rate sits below LoRA's.
    Method("lora+", {"strategy": "lora"}, (1e-4, 1e-3), {"lora_plus_ratio": (16.0, 4.0), **_LORA}),
    # Starting from the weight's principal directions, a large step undoes them (3e-3 stayed at ln 5).
    Method("pissa", {"strategy": "lora", "lora_init": "pissa"}, (1e-4, 1e-3), _LORA),
    Method("olora", {"strategy": "lora", "lora_init": "olora"}, (1e-4, 1e-3), _LORA),
    Method("vera", {"strategy": "vera"}, (1e-2, 1e-1), {"vera_targets": ("qv", "all-linear")}),
    Method("ia3", {"strategy": "ia3"}, (1e-2, 1e-1)),
    # GaLore scales its projected update by 0.25: about four times full fine-tuning's rate.
    Method("galore", {"strategy": "galore"}, (1e-4, 1e-3)),
    # d numbers move every weight through a random projection; intrinsic-dim's rate (1e-2) in the middle.
    Method("subspace", {"strategy": "subspace"}, (1e-3, 1e-1)),
)}
ALIASES = {"lora-plus": "lora+"}


def get_method(name: str, option: str) -> Method:
    """The method `name` (or an alias of it) names; unknown names are refused in one line naming `option`."""
    key = ALIASES.get(name, name)
    if key not in METHODS:
        raise LoralabError(f"invalid {option} {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[key]


def targets(key: str, value: Any) -> Any:
    """A target choice as run settings take it: a set's name -> its targets; anything else unchanged."""
    if key in ("lora_targets", "vera_targets") and isinstance(value, str):
        return TARGET_SETS.get(value, (value,))
    return value
