"""LoRA+: B learns faster than A (Hayou et al. 2024, "LoRA+: Efficient Low Rank Adaptation of Large Models").

With one learning rate for both, A and B of a wide layer cannot both learn efficiently: B starts at
zero and its updates are scaled by A, so the paper (Sec. 3, Thm. 1) sets B's learning rate to a
fixed ratio of A's:

    eta_B = ratio * eta_A,        ratio = 16 by default (their recommendation for most tasks)

LoRA+ is no new layer, only an optimizer setting. `lora_plus_groups` splits what trains into
(parameters, learning-rate multiplier) pairs: every `LoraLinear`'s A at 1, its B at `ratio`, every
other trainable parameter (a head, a DoRA magnitude) at 1. A training loop whose parameter groups
carry a learning rate of their own gives each pair `lr * multiplier`:

    torch.optim.AdamW([{"params": params, "lr": lr * m} for params, m in lora_plus_groups(model, config)])

peft's `create_loraplus_optimizer` also gives every 1-D parameter (biases, norms, a DoRA magnitude)
B's rate; loralab keeps the paper's split, B alone, and agrees with peft wherever only A and B train.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from loralab.strategies.lora import lora_layers
from loralab.validate import number


@dataclass(frozen=True)
class LoraPlusConfig:
    """Settings of LoRA+."""

    ratio: float = 16.0
    """B's learning rate over A's (eta_B / eta_A); 1 is plain LoRA."""

    def __post_init__(self):
        number("strategy.lora_plus.ratio", self.ratio, low=0, low_open=True)


def lora_plus_groups(model: nn.Module, config: LoraPlusConfig) -> tuple[tuple[tuple[nn.Parameter, ...], float], ...]:
    """What trains in `model`, as (parameters, learning-rate multiplier) pairs: A's at 1, B's at
    `config.ratio`, the rest at 1; each in the model's parameter order, empty pairs left out."""
    a = {id(layer.lora_A) for layer in lora_layers(model)}
    b = {id(layer.lora_B) for layer in lora_layers(model)}
    trainable = [p for p in model.parameters() if p.requires_grad]
    pairs = (
        (tuple(p for p in trainable if id(p) in a), 1.0),
        (tuple(p for p in trainable if id(p) in b), config.ratio),
        (tuple(p for p in trainable if id(p) not in a and id(p) not in b), 1.0),
    )
    return tuple((params, multiplier) for params, multiplier in pairs if params)
