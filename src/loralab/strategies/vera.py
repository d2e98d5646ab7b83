"""VeRA: vector-based random matrix adaptation (Kopiczko et al. 2024, "VeRA: Vector-based Random Matrix
Adaptation").

LoRA's A and B are replaced by one pair of frozen random matrices shared by every adapted layer;
each layer trains only two vectors that scale them:

    h = W0 x + Lambda_b B Lambda_d A x        Lambda_b = diag(b): (out,), Lambda_d = diag(d): (r,)

A (r, in_max) and B (out_max, r) are drawn once, Kaiming-uniform, from a `torch.Generator` seeded
with `seed`, at the largest input and output sizes among the adapted layers; a layer uses their
top-left (r, in) and (out, r) slices (as peft does). They are never saved: the seed rebuilds them,
so a trained VeRA is its seed plus out + r numbers per layer. b starts at zero (the adapted
model equals its base) and d at `d_initial` (0.1, the paper's Sec. 3.1 and peft's default).
`merge()` adds Lambda_b B Lambda_d A to W0; `unmerge()` takes it out; both explicit and idempotent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from loralab.dropout import dropout
from loralab.errors import LoralabError
from loralab.settings.strategy import VeraConfig
from loralab.models import is_linear
from loralab.models.quantize import dequantize, is_quantized
from loralab.strategies.wrapping import merge_all, put, unmerge_all, unwrap, wrappers


def _kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """U(-bound, bound), bound = sqrt(3) * sqrt(2) / sqrt(fan_in): Kaiming-uniform for ReLU gain, drawn from `generator`."""
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


class VeraProjections(nn.Module):
    """The frozen random A (r, in_max) and B (out_max, r) that every VeRA layer of a model shares."""

    def __init__(self, r: int, in_max: int, out_max: int, seed: int):
        super().__init__()
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        # Not persistent: a state dict never holds them; the seed rebuilds them bit for bit.
        self.register_buffer("vera_A", _kaiming_uniform((r, in_max), generator), persistent=False)
        self.register_buffer("vera_B", _kaiming_uniform((out_max, r), generator), persistent=False)

    def extra_repr(self) -> str:
        return f"seed={self.seed}, A={tuple(self.vera_A.shape)}, B={tuple(self.vera_B.shape)}"


class VeraLinear(nn.Module):
    """Wraps a frozen linear layer (`base`) and adds diag(b) B diag(d) A dropout(x), A and B shared."""

    def __init__(self, base: nn.Module, projections: VeraProjections, d_initial: float = 0.1, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.transposed = not isinstance(base, nn.Linear)  # a Conv1D keeps W0 as (in, out)
        self.out_features, self.in_features = self.weight().shape
        self.projections = projections
        r = projections.vera_A.shape[0]
        self.lambda_b = nn.Parameter(torch.zeros(self.out_features, device=base.weight.device))
        self.lambda_d = nn.Parameter(torch.full((r,), float(d_initial), device=base.weight.device))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def weight(self) -> torch.Tensor:
        """W0 as (out, in), a view of the base layer's weight however it stores it."""
        return self.base.weight.t() if self.transposed else self.base.weight

    def slices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's A (r, in) and B (out, r): the shared matrices' top-left corners."""
        return (self.projections.vera_A[:, : self.in_features], self.projections.vera_B[: self.out_features])

    def delta_weight(self) -> torch.Tensor:
        a, b = self.slices()
        return (self.lambda_b[:, None] * b) @ (self.lambda_d[:, None] * a)  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        a, b = self.slices()
        inner = (dropout(x, self.dropout) @ a.t()) * self.lambda_d  # (..., r)
        return out + (inner @ b.t()) * self.lambda_b  # (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            if is_quantized(self.base):
                self.base = dequantize(self.base)
            self.weight().add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight().sub_(self.delta_weight())
            self.merged = False

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}"


def apply_vera(model: nn.Module, config: VeraConfig, module_names: list[str]) -> list[str]:
    """Wrap each named linear layer in a `VeraLinear`, all sharing one `VeraProjections`, in place."""
    layers = [model.get_submodule(name) for name in module_names]
    for name, layer in zip(module_names, layers):
        if not is_linear(layer):
            raise LoralabError(f"VeRA target {name!r} is a {type(layer).__name__}; VeRA adapts linear layers only")
    shapes = [layer.weight.shape[::-1] if not isinstance(layer, nn.Linear) else layer.weight.shape for layer in layers]
    projections = VeraProjections(config.r, max(s[1] for s in shapes), max(s[0] for s in shapes), config.seed)
    projections.to(layers[0].weight.device)
    for name, layer in zip(module_names, layers):
        put(model, name, VeraLinear(layer, projections, config.d_initial, config.dropout))
    return module_names


def vera_layers(model: nn.Module) -> list[VeraLinear]:
    return wrappers(model, VeraLinear)


def merge(model: nn.Module) -> None:
    """Merge every VeRA update into its base weight (idempotent)."""
    merge_all(model, VeraLinear)


def unmerge(model: nn.Module) -> None:
    """Take every merged VeRA update back out (idempotent)."""
    unmerge_all(model, VeraLinear)


def merge_vera(model: nn.Module) -> None:
    """Merge every VeRA layer and put its base layer back in its place: the plain base architecture."""
    unwrap(model, VeraLinear)


# peft's names for a VeRA layer's trained vectors, after the layer's own name.
PEFT_NAMES = {"lambda_b": "vera_lambda_b", "lambda_d": "vera_lambda_d"}


def peft_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every VeRA layer's vectors under peft's key names (without peft's `base_model.model.` prefix)."""
    return {f"{name}.{theirs}": layer.get_parameter(ours) for name, layer in model.named_modules()
            if isinstance(layer, VeraLinear) for ours, theirs in PEFT_NAMES.items()}


@torch.no_grad()
def load_peft_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy vectors named as `peft_state` names them into the VeRA layers of `model`."""
    for name, layer in model.named_modules():
        if isinstance(layer, VeraLinear):
            for ours, theirs in PEFT_NAMES.items():
                layer.get_parameter(ours).copy_(tensors[f"{name}.{theirs}"])
