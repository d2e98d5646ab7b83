"""IA3: learned rescaling of activations (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is
Better and Cheaper than In-Context Learning", Sec. 3.3: (IA)^3, "Infused Adapter by Inhibiting and
Amplifying Inner Activations").

Three trained vectors per block rescale, elementwise, the attention's keys and values and the
feed-forward block's inner activation:

    k = l_k * (W_k x + b_k),    v = l_v * (W_v x + b_v),    FFN(x) = W_2 (l_ff * gelu(W_1 x))

The first two scale a layer's output (bias included); the third scales the input of the FFN's
output projection (as peft does: its `feedforward_modules`). Every vector starts at ones, so an
adapted model equals its base; with so few numbers (2 d + d_ff per block) it trains very cheaply.
`merge()` folds a vector into its layer: an output scale multiplies W's rows and b, an input scale
W's columns; `unmerge()` divides it out again. Both are explicit and idempotent.
"""

from __future__ import annotations


import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.settings.strategy import IA3Config
from loralab.models import Architecture, architecture, is_linear
from loralab.models.quantize import dequantize, is_quantized
from loralab.names import has_suffix
from loralab.strategies.selection import find_modules
from loralab.strategies.wrapping import merge_all, put, unmerge_all, unwrap, wrappers


class IA3Linear(nn.Module):
    """Wraps a frozen linear layer (`base`) and scales its output, or its input (`feedforward`), by `scale`."""

    def __init__(self, base: nn.Module, feedforward: bool):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.transposed = not isinstance(base, nn.Linear)  # a Conv1D keeps W as (in, out)
        self.feedforward = feedforward
        out_features, in_features = self.weight().shape
        self.scale = nn.Parameter(torch.ones(in_features if feedforward else out_features, device=base.weight.device))
        self.merged = False

    def weight(self) -> torch.Tensor:
        """W as (out, in), a view of the base layer's weight however it stores it."""
        return self.base.weight.t() if self.transposed else self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        if self.feedforward:
            return self.base(x * self.scale)  # (..., in)
        return self.base(x) * self.scale  # (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            if is_quantized(self.base):
                self.base = dequantize(self.base)
            self._fold(self.scale)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self._fold(1 / self.scale)
            self.merged = False

    def _fold(self, scale: torch.Tensor) -> None:
        if self.feedforward:
            self.weight().mul_(scale[None, :])  # columns: the input's entries
        else:
            self.weight().mul_(scale[:, None])  # rows: the output's entries
            if self.base.bias is not None:
                self.base.bias.mul_(scale)

    def extra_repr(self) -> str:
        return f"feedforward={self.feedforward}"


def ffn_output_modules(model: nn.Module, arch: Architecture) -> list[str]:
    """The feed-forward blocks' output projections (never the attention output, whose name may end alike)."""
    return [name for name, module in model.named_modules()
            if is_linear(module) and has_suffix(name, arch.ffn_output) and not has_suffix(name, arch.attention_output)]


def ia3_targets(model: nn.Module, config: IA3Config) -> tuple[list[str], list[str]]:
    """(output-scaled, input-scaled) module names that `config` picks in `model`."""
    arch = architecture(model)
    suffixes = tuple(t for t in config.feedforward if t != "ffn_output")
    feedforward = ffn_output_modules(model, arch) if "ffn_output" in config.feedforward else []
    if suffixes:
        feedforward += [n for n in find_modules(model, arch, suffixes) if n not in feedforward]
    scaled = [n for n in find_modules(model, arch, config.targets) if n not in feedforward] if config.targets else []
    if not feedforward and "ffn_output" in config.feedforward:
        raise LoralabError(f"no feed-forward output layer '{arch.ffn_output}' in this {type(model).__name__}")
    return scaled, feedforward


def apply_ia3(model: nn.Module, config: IA3Config) -> list[str]:
    """Wrap the layers `config` picks in `IA3Linear`s, in place; returns their names."""
    scaled, feedforward = ia3_targets(model, config)
    for name in scaled + feedforward:
        layer = model.get_submodule(name)
        if not is_linear(layer):
            raise LoralabError(f"IA3 target {name!r} is a {type(layer).__name__}; IA3 rescales linear layers only")
        put(model, name, IA3Linear(layer, feedforward=name in feedforward))
    return scaled + feedforward


def ia3_layers(model: nn.Module) -> list[IA3Linear]:
    return wrappers(model, IA3Linear)


def merge(model: nn.Module) -> None:
    """Fold every IA3 vector into its layer (idempotent)."""
    merge_all(model, IA3Linear)


def unmerge(model: nn.Module) -> None:
    """Divide every folded IA3 vector back out (idempotent)."""
    unmerge_all(model, IA3Linear)


def merge_ia3(model: nn.Module) -> None:
    """Fold every IA3 vector and put its base layer back in its place: the plain base architecture."""
    unwrap(model, IA3Linear)


def peft_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every IA3 vector under peft's key (`<layer>.ia3_l`) and shape: (out, 1), or (1, in) for an input scale."""
    return {f"{name}.ia3_l": layer.scale[None, :] if layer.feedforward else layer.scale[:, None]
            for name, layer in model.named_modules() if isinstance(layer, IA3Linear)}


@torch.no_grad()
def load_peft_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy IA3 vectors named and shaped as `peft_state` gives them into the IA3 layers of `model`."""
    for name, layer in model.named_modules():
        if isinstance(layer, IA3Linear):
            layer.scale.copy_(tensors[f"{name}.ia3_l"].flatten())
