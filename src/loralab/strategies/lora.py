"""LoRA: low-rank adaptation (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

A frozen linear layer W0 gets a trainable low-rank update:

    h = W0 x + (alpha / r) * B A dropout(x)        A: (r, in), B: (out, r)

A starts Kaiming-uniform and B at zero, so an adapted model equals its base before training
(Sec. 4.1). rsLoRA (Kalajdzievski 2023) scales by alpha / sqrt(r) instead, which keeps the
update's magnitude stable as r grows. `merge()` adds the update to W0 for inference at the base
model's speed; `unmerge()` takes it out again. Both are explicit and idempotent. `merge_lora()`
merges for good: it also puts each base layer back in its adapter's place.

The base is an `nn.Linear`, or transformers' `Conv1D` (GPT-2), which computes the same x W0^T + b but
stores W0 transposed, as (in, out); A and B keep their shapes either way. With `--quantize` the base
becomes a bitsandbytes 4- or 8-bit layer after the adapters are built (`loralab.models.quantize`:
QLoRA); A and B stay float32, and `merge()` first turns the base back into the float layer it
computes with, then adds the update. With `--base-dtype bfloat16` the base is a `HalfLinear` whose
weight is cast to float32 at the product (`loralab.models.half`); A and B stay float32.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from loralab.dropout import dropout
from loralab.errors import LoralabError
from loralab.settings.strategy import LoraConfig  # noqa: F401 (re-exported: loralab.strategies.lora.LoraConfig)
from loralab.models import is_linear
from loralab.models.half import HalfLinear
from loralab.models.quantize import dequantize, is_quantized
from loralab.strategies.wrapping import merge_all, put, unmerge_all, unwrap, wrappers




class _MergedLinear(torch.autograd.Function):
    """y = x (W0 + s B A)^T + b, with the gradients of A and B taken without forming s B A x.

    Backward: dx = g (W0 + s B A), dB = s g^T (x A^T), dA = s (g B)^T x, where g = dL/dy. W0 + s B A
    is rebuilt in backward (out * in * r flops) rather than saved, so no weight-sized tensor is kept.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_A, lora_B, scaling):
        ctx.save_for_backward(x, weight, lora_A, lora_B)  # a half W0 (`--base-dtype`) is saved as it is stored
        ctx.scaling = scaling
        # A half W0 is cast to A's float32 at the product (`.to` is a no-op on a float32 W0).
        return torch.nn.functional.linear(x, torch.addmm(weight.to(lora_A.dtype), lora_B, lora_A, alpha=scaling), bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight, lora_A, lora_B = ctx.saved_tensors
        s = ctx.scaling
        g = grad.reshape(-1, grad.shape[-1])  # (tokens, out)
        x2 = x.reshape(-1, x.shape[-1])  # (tokens, in)
        dx = dw = db = dA = dB = None
        if ctx.needs_input_grad[0]:
            dx = grad @ torch.addmm(weight.to(lora_A.dtype), lora_B, lora_A, alpha=s)  # (..., in)
        if ctx.needs_input_grad[1]:
            dw = g.t() @ x2
        if ctx.needs_input_grad[2]:
            db = g.sum(0)
        if ctx.needs_input_grad[3]:
            dA = (g @ lora_B).t().mm(x2).mul_(s)  # (r, in)
        if ctx.needs_input_grad[4]:
            dB = g.t().mm(x2 @ lora_A.t()).mul_(s)  # (out, r)
        return dx, dw, db, dA, dB, None


class LoraLinear(nn.Module):
    """Wraps a frozen linear layer (`base`) and adds (alpha / r) B A dropout(x) to its output."""

    def __init__(self, base: nn.Module, r: int, scaling: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.transposed = not isinstance(base, nn.Linear)  # a Conv1D keeps W0 as (in, out)
        out_features, in_features = self.weight().shape
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(r, in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # the default init of nn.Linear, as in Hu et al.
        self.scaling = scaling
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # no copy of x when off
        self.merged = False

    def weight(self) -> torch.Tensor:
        """W0 as (out, in), a view of the base layer's weight however it stores it."""
        return self.base.weight.t() if self.transposed else self.base.weight

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        # A Conv1D or a quantized base always takes the second path: its own product then gives, with B = 0,
        # its output bit for bit (a quantized W0 has no float tensor to add B A to).
        fused = type(self.base) in (nn.Linear, HalfLinear) and (isinstance(self.dropout, nn.Identity) or not self.training)
        if fused and not torch.is_autocast_enabled(x.device.type):
            # Without dropout, W0 x + s B A x = (W0 + s B A) x: one product, no (..., out) update tensor.
            return _MergedLinear.apply(x, self.base.weight, self.base.bias, self.lora_A, self.lora_B, self.scaling)
        out = self.base(x)
        update = dropout(x, self.dropout) @ self.lora_A.t()  # (..., r)
        # addmm adds s * update B^T into out within the product: no separate scale and add passes.
        return torch.addmm(out.reshape(-1, out.shape[-1]), update.reshape(-1, update.shape[-1]), self.lora_B.t(),
                           alpha=self.scaling).view(out.shape)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            if is_quantized(self.base):
                self.base = dequantize(self.base)  # dequant(Q(W0)): the weight the unmerged layer computes with
            self.weight().add_(self.delta_weight())  # in place through the view: into the base layer's own tensor
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight().sub_(self.delta_weight())
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.lora_A.shape[0]}, scaling={self.scaling:g}"


def apply_lora(model: nn.Module, config: LoraConfig, module_names: list[str]) -> list[str]:
    """Replace each named linear layer (`nn.Linear` or `Conv1D`) with a `LoraLinear` wrapping it, in place."""
    for name in module_names:
        layer = model.get_submodule(name)
        if not is_linear(layer):
            raise LoralabError(f"LoRA target {name!r} is a {type(layer).__name__}, loralab adapts linear layers only "
                               "(nn.Linear, transformers' Conv1D)")
        put(model, name, LoraLinear(layer, config.r, config.scaling, config.dropout))
    return module_names


def lora_layers(model: nn.Module) -> list[LoraLinear]:
    return wrappers(model, LoraLinear)


def merge(model: nn.Module) -> None:
    """Merge every adapter into its base weight (idempotent)."""
    merge_all(model, LoraLinear)


def unmerge(model: nn.Module) -> None:
    """Take every merged adapter back out of its base weight (idempotent)."""
    unmerge_all(model, LoraLinear)


def merge_lora(model: nn.Module) -> None:
    """Merge every adapter into its base weight and put the base layer back in its place, in place.

    Afterwards the model has exactly the base architecture and parameter names (Hu et al. 2021,
    Sec. 4.1, "no additional inference latency"); unlike `merge`, there is no way back.
    """
    unwrap(model, LoraLinear)
