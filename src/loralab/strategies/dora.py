"""DoRA: weight-decomposed low-rank adaptation (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation").

A weight splits into a magnitude and a direction; LoRA moves the direction, and a trained vector m
sets the magnitude of each output row:

    W' = m * (W0 + s B A) / ||W0 + s B A||        m: (out,), the norm per output row (over the inputs)
    h  = W' x + b = (m / n) * (W0 x + s B A dropout(x)) + b,   n = ||W0 + s B A||

m starts at ||W0|| (B = 0), so an adapted model equals its base before training. As the paper
suggests (Sec. 4.3) and peft does, n is a constant to backpropagation: it is computed without
gradient, once per layer per forward (a weight-sized product, not one per token), which saves the
memory of differentiating through the norm. The low-rank part is a `LoraLinear` held inside
(`lora`): its forward gives W0 x + b + s B A dropout(x), which DoRA rescales around the bias. On a
4-bit base (QDoRA) the norm reads the dequantized weight the base computes with.

`merge()` writes W' into the base weight and remembers n, so `unmerge()` restores W0 + ... exactly
up to rounding; both are explicit and idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from loralab.models.quantize import dequantized_weight, is_quantized
from loralab.strategies.lora import LoraConfig, LoraLinear, apply_lora
from loralab.strategies.wrapping import merge_all, put, unmerge_all, unwrap, wrappers
from loralab.validate import SettingError


@dataclass(frozen=True)
class DoraConfig:
    """Settings of DoRA: its low-rank part is an ordinary LoRA."""

    lora: LoraConfig = LoraConfig()
    """Rank, alpha, dropout and targets of the direction's low-rank update."""

    def __post_init__(self):
        if not isinstance(self.lora, LoraConfig):
            raise SettingError("strategy.dora.lora", self.lora, "a LoraConfig")


class DoraLinear(nn.Module):
    """Wraps a `LoraLinear` (`lora`) and rescales each output row to a trained magnitude (`magnitude`)."""

    def __init__(self, lora: LoraLinear):
        super().__init__()
        self.lora = lora
        self.magnitude = nn.Parameter(self.weight_norm())  # ||W0 + s B A|| = ||W0|| while B = 0
        self.norm: torch.Tensor | None = None  # n at merge time, for unmerge
        self.merged = False

    @property
    def base(self) -> nn.Module:
        return self.lora.base

    @torch.no_grad()
    def weight_norm(self) -> torch.Tensor:
        """n = ||W0 + s B A|| per output row, without gradient (Sec. 4.3)."""
        weight = dequantized_weight(self.base) if is_quantized(self.base) else self.lora.weight()
        return torch.linalg.norm(weight + self.lora.delta_weight(), dim=1)  # (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        out = self.lora(x)  # W0 x + b + s B A dropout(x)
        scale = self.magnitude / self.weight_norm()  # (out,)
        bias = self.base.bias
        if bias is None:
            return out * scale
        return torch.addcmul(bias, out - bias, scale)  # the bias stays out of the rescaling, as in W' x + b

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.norm = self.weight_norm()
            self.lora.merge()  # W0 + s B A in the base (dequantized first when 4-bit)
            self.lora.weight().mul_((self.magnitude / self.norm)[:, None])
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.lora.weight().div_((self.magnitude / self.norm)[:, None])
            self.lora.unmerge()
            self.norm, self.merged = None, False

    def extra_repr(self) -> str:
        return f"magnitude={tuple(self.magnitude.shape)}"


def apply_dora(model: nn.Module, config: DoraConfig, module_names: list[str]) -> list[str]:
    """Wrap each named linear layer in a `LoraLinear` and that in a `DoraLinear`, in place."""
    apply_lora(model, config.lora, module_names)
    for name in module_names:
        put(model, name, DoraLinear(model.get_submodule(name)))
    return module_names


def dora_layers(model: nn.Module) -> list[DoraLinear]:
    return wrappers(model, DoraLinear)


# peft's names for a DoRA layer's tensors (its LoRA with `use_dora`), after the layer's own name.
PEFT_NAMES = {"lora.lora_A": "lora_A.weight", "lora.lora_B": "lora_B.weight", "magnitude": "lora_magnitude_vector"}


def peft_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every DoRA layer's trained tensors under peft's key names (without peft's `base_model.model.` prefix)."""
    tensors = {}
    for name, layer in model.named_modules():
        if isinstance(layer, DoraLinear):
            for ours, theirs in PEFT_NAMES.items():
                tensors[f"{name}.{theirs}"] = layer.get_parameter(ours)
    return tensors


@torch.no_grad()
def load_peft_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy tensors named as `peft_state` names them into the DoRA layers of `model`."""
    for name, layer in model.named_modules():
        if isinstance(layer, DoraLinear):
            for ours, theirs in PEFT_NAMES.items():
                layer.get_parameter(ours).copy_(tensors[f"{name}.{theirs}"])


def merge(model: nn.Module) -> None:
    """Merge every DoRA layer into its base weight (idempotent)."""
    merge_all(model, DoraLinear)


def unmerge(model: nn.Module) -> None:
    """Take every merged DoRA layer back out of its base weight (idempotent)."""
    unmerge_all(model, DoraLinear)


def merge_dora(model: nn.Module) -> None:
    """Merge every DoRA layer and put its base layer back in its place: the plain base architecture."""
    unwrap(model, DoraLinear)
