"""A frozen base stored in half precision: the matrices a strategy leaves frozen, kept in bf16 or fp16.

A LoRA run trains a few small tensors; the base's weights only carry the forward and backward
pass. Stored in float32 they take 4 bytes each; `half_base(model, "bfloat16")` keeps them in 2 (what a
peft user gets loading with `torch_dtype=torch.bfloat16`), while everything that trains stays float32
(LoRA's A and B, DoRA's magnitudes, VeRA's and IA3's vectors, the head) and AdamW updates it in float32.

What is cast: the weight of every frozen `nn.Linear`, `nn.Embedding` and Conv1D (GPT-2) outside the task head (a
decoder's tied output layer goes with its embedding: one tensor). Biases, norms and other vectors
stay float32: they are a thousandth of the weights and the most sensitive to rounding.

The activations stay float32 and the cast happens at the product, never by keeping a float32 copy:

- a `HalfLinear` multiplies by its weight cast to the input's dtype (with `--precision bf16`, autocast's
  bfloat16: no cast at all), and saves the half weight, not the cast one, for its backward pass, so the
  graph holds no weight-sized float32 tensor. A weight larger than `CHUNK` elements is cast a block
  of output rows at a time, which bounds the transient copy (a 128k-token vocabulary's output layer).
- a `HalfEmbedding` looks rows up in the half table and returns them as float32.

So with float32 compute, a half base changes a run only by rounding W0 to half precision (bf16:
about 3 significant digits); merging writes float32 weights: W0 as rounded, plus the update
(`float_base` first undoes the classes, then each strategy's merge adds its update in float32).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from loralab.heap import release_heap
from loralab.models.architectures import architecture, is_head

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CHUNK = 2**24  # elements (64 MiB as float32): a larger weight is cast a block of rows at a time


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a product runs in: autocast's when it is on, else the input's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _blocks(weight: torch.Tensor) -> list[slice]:
    rows = max(1, CHUNK // max(1, weight.shape[1]))
    return [slice(i, i + rows) for i in range(0, weight.shape[0], rows)]


def cast_product(x: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x W^T with the (out, in) `weight` cast to `dtype`, a block of rows at a time when it is large."""
    if weight.numel() <= CHUNK:
        return x @ weight.to(dtype).t()
    return torch.cat([x @ weight[b].to(dtype).t() for b in _blocks(weight)], dim=-1)


def cast_back_product(g: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """g W with the (out, in) `weight` cast to `dtype` (the backward of `cast_product`), by blocks when large."""
    if weight.numel() <= CHUNK:
        return g @ weight.to(dtype)
    out = None
    for b in _blocks(weight):
        part = g[..., b] @ weight[b].to(dtype)
        out = part if out is None else out.add_(part)
    return out


class _HalfProduct(torch.autograd.Function):
    """y = x W^T + b with W stored in half precision and cast at the product; the half W is what backward keeps."""

    @staticmethod
    def forward(ctx, x, weight, bias, dtype):
        ctx.save_for_backward(weight)
        ctx.dtype, ctx.x_dtype = dtype, x.dtype
        with torch.autocast(x.device.type, enabled=False):
            out = cast_product(x.to(dtype), weight, dtype)
            return out if bias is None else out.add_(bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        dx = db = None
        with torch.autocast(grad.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                dx = cast_back_product(grad.to(ctx.dtype), weight, ctx.dtype).to(ctx.x_dtype)
            if ctx.needs_input_grad[2]:  # the bias is frozen with its layer; kept for completeness
                db = grad.reshape(-1, grad.shape[-1]).sum(0)
        return dx, None, db, None


class HalfLinear(nn.Linear):
    """An `nn.Linear` whose frozen weight is stored in half precision and cast at the product."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _HalfProduct.apply(x, self.weight, self.bias, _compute_dtype(x))


class HalfEmbedding(nn.Embedding):
    """An `nn.Embedding` whose frozen table is stored in half precision; the rows it returns are float32."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids).float()


@functools.cache
def half_classes() -> dict[type, type]:
    """Each plain class a frozen matrix may sit in, and its half twin (transformers' Conv1D, GPT-2's, made
    here: importing loralab does not import transformers)."""
    from transformers.pytorch_utils import Conv1D

    class HalfConv1D(Conv1D):
        """transformers' `Conv1D` (y = x W + b, W stored as (in, out)) with its frozen W in half precision."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return _HalfProduct.apply(x, self.weight.t(), self.bias, _compute_dtype(x))

    return {nn.Linear: HalfLinear, nn.Embedding: HalfEmbedding, Conv1D: HalfConv1D}


def _float_classes() -> dict[type, type]:
    return {half: plain for plain, half in half_classes().items()}


@dataclass(frozen=True)
class HalfReport:
    """What `half_base` stored in half precision, and what it saves."""

    dtype: str
    modules: int
    weights: int
    """Elements in the cast tensors (a tied tensor counted once)."""
    float_bytes: int
    half_bytes: int

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "modules": self.modules, "weights": self.weights,
                "float_bytes": self.float_bytes, "half_bytes": self.half_bytes}


def _frozen_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every plain `nn.Linear` / `nn.Embedding` outside the head whose weight does not train."""
    arch = architecture(model)
    return [(name, m) for name, m in model.named_modules()
            if type(m) in half_classes() and not m.weight.requires_grad and not is_head(name, arch)]


@torch.no_grad()
def half_base(model: nn.Module, dtype: str) -> HalfReport | None:
    """Store the frozen base matrices of `model` in `dtype` ("bfloat16" or "float16"), in place, after the
    strategy chose what trains; None for "float32" (nothing changes). What trains is never touched."""
    if DTYPES[dtype] == torch.float32:
        return None
    target = DTYPES[dtype]
    done: set[int] = set()
    modules = weights = float_bytes = half_bytes = 0
    for _, module in _frozen_modules(model):
        weight = module.weight
        if id(weight) not in done:  # a tied weight (embedding and output layer) is one tensor, cast once
            done.add(id(weight))
            weights += weight.numel()
            float_bytes += weight.numel() * weight.element_size()
            weight.data = weight.data.to(target)
            half_bytes += weight.numel() * weight.element_size()
        module.__class__ = half_classes()[type(module)]
        modules += 1
    _off_the_file(model, done)
    release_heap(collect=True)  # the float32 tensors just replaced go back to the OS (peak RSS on CPU)
    return HalfReport(dtype, modules, weights, float_bytes, half_bytes)


def _off_the_file(model: nn.Module, cast: set[int]) -> None:
    """Copy every tensor not cast (vectors, what trains, buffers) into memory of its own.

    transformers maps a safetensors file into memory and its tensors are views of that mapping: while
    one of them lives, the whole mapping stays, and every page of it that was read counts in the
    process's memory. Casting the matrices leaves the vectors holding it; copying them (a thousandth
    of the weights) lets the mapping go, so only the half matrices remain."""
    seen = set(cast)
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            tensor.data = tensor.data.clone()


@torch.no_grad()
def float_base(model: nn.Module) -> int:
    """Undo `half_base`: every half matrix back to float32 (its values as rounded) and plain classes; returns how many modules."""
    count, plain = 0, _float_classes()
    for module in model.modules():
        if type(module) in plain:
            if module.weight.dtype != torch.float32:
                module.weight.data = module.weight.data.float()
            module.__class__ = plain[type(module)]
            count += 1
    return count
