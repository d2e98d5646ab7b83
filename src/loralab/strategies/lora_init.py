"""PiSSA and OLoRA: LoRA started from the base weight's own principal directions, not from zero.

Plain LoRA starts B at zero, so B A begins as nothing. These start A and B from a rank-r
factorisation of W0 itself and keep the rest as a frozen residual, so that the adapted model still
equals its base before training:

    W0 = W_res + s B A,        h = W_res x + s B A x

- PiSSA (Meng et al. 2024, "PiSSA: Principal Singular Values and Singular Vectors Adaptation of
  Large Language Models"): W0 = U S V^T; B = U_r sqrt(S_r / s), A = sqrt(S_r / s) V_r^T, so training
  moves the r principal components. `niter` uses a randomized SVD (Halko et al. 2011, Alg. 4.4:
  a seeded Gaussian sketch refined by `niter` power iterations), as peft's `pissa_niter_N`, which is
  far faster on large weights and close to exact after a few iterations.
- OLoRA (Büyükakyüz 2024, "OLoRA: Orthonormal Low-Rank Adaptation of Large Language Models"):
  W0 = Q R; B = Q[:, :r], A = R[:r] (peft's form: no 1/s, so W_res = W0 - s Q_r R_r).

The residual is written into the base layer in place of W0 (in W0's dtype), so `LoraLinear.merge`
gives W_res + s B A: W0 before training, exact up to rounding. With a quantized base, QPiSSA
(the paper's Sec. 4.4) initialises on the float base and then quantizes the residual, which is
loralab's order anyway (quantize after the strategy); a base already quantized is refused for PiSSA,
as peft does. OLoRA on a quantized base, as peft supports it, dequantizes, factors, and quantizes the
residual again with the layer's own settings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.models.quantize import COMPUTE_DTYPES, QuantizeConfig, dequantized_weight, is_quantized, quantized_linear
from loralab.strategies.lora import LoraLinear, lora_layers
from loralab.validate import SettingError, number


class Init(enum.Enum):
    PISSA = "pissa"
    OLORA = "olora"


@dataclass(frozen=True)
class LoraInitConfig:
    """How A and B start: from the base weight's principal components (PiSSA) or its QR (OLoRA)."""

    method: Init = Init.PISSA
    """pissa or olora."""
    niter: int | None = None
    """PiSSA only: power iterations of a randomized SVD (peft's pissa_niter_N); None: the exact SVD."""
    seed: int = 0
    """PiSSA with niter: seed of the randomized SVD's Gaussian sketch."""

    def __post_init__(self):
        try:
            object.__setattr__(self, "method", Init(self.method))
        except ValueError:
            raise SettingError("strategy.lora_init.method", self.method, "one of " + ", ".join(i.value for i in Init)) from None
        number("strategy.lora_init.niter", self.niter, integer=True, low=0, optional=True)
        number("strategy.lora_init.seed", self.seed, integer=True, low=0)
        if self.niter is not None and self.method is not Init.PISSA:
            raise SettingError("strategy.lora_init.niter", self.niter, f"none with {self.method.value} (PiSSA only)")


def randomized_svd(weight: torch.Tensor, rank: int, niter: int, generator: torch.Generator):
    """U (out, rank), S (rank,), Vh (rank, in) of a rank-`rank` approximation, by a sketch of `rank` Gaussian columns."""
    sketch = torch.randn(weight.shape[1], rank, generator=generator).to(weight)  # (in, rank)
    basis = torch.linalg.qr(weight @ sketch).Q  # (out, rank): an orthonormal basis of the range
    for _ in range(niter):  # power iterations sharpen it towards the top singular directions
        basis = torch.linalg.qr(weight @ torch.linalg.qr(weight.t() @ basis).Q).Q
    u, s, vh = torch.linalg.svd(basis.t() @ weight, full_matrices=False)  # (rank, in): small
    return basis @ u, s, vh


def factors(weight: torch.Tensor, rank: int, scaling: float, config: LoraInitConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A) with s B A the part of `weight` (out, in; float32) that the method hands to training."""
    if config.method is Init.OLORA:
        q, r = torch.linalg.qr(weight)  # (out, k), (k, in)
        return q[:, :rank].contiguous(), r[:rank].contiguous()
    if config.niter is None:
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    else:
        u, s, vh = randomized_svd(weight, rank, config.niter, torch.Generator().manual_seed(config.seed))
    root = torch.sqrt(s[:rank] / scaling)  # the scale s splits evenly between B and A
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def _quantize_like(plain: nn.Linear, quantized: nn.Module) -> nn.Module:
    """`plain` quantized with the settings `quantized` was made with."""
    state = getattr(quantized.weight, "quant_state", None)
    if state is None:
        return quantized_linear(plain, QuantizeConfig("int8"))
    dtype = next(name for name, d in COMPUTE_DTYPES.items() if d == (quantized.compute_dtype or torch.float32))
    return quantized_linear(plain, QuantizeConfig(quantized.weight.quant_type, quantized.weight.compress_statistics, dtype))


@torch.no_grad()
def initialise(layer: LoraLinear, config: LoraInitConfig) -> None:
    """Start `layer`'s A and B by `config.method` and leave the residual W0 - s B A in its base."""
    if layer.merged:
        raise LoralabError("initialise a LoRA layer before merging it")
    quantized = is_quantized(layer.base)
    if quantized and config.method is Init.PISSA:
        raise LoralabError("PiSSA initialises on the float base weight; apply it before quantizing (QPiSSA quantizes "
                           "the residual), not to a quantized layer")
    weight = dequantized_weight(layer.base) if quantized else layer.weight().float()  # (out, in)
    b, a = factors(weight, layer.lora_A.shape[0], layer.scaling, config)
    layer.lora_A.copy_(a)
    layer.lora_B.copy_(b)
    residual = weight - layer.scaling * (b @ a)
    if quantized:
        plain = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.base.bias is not None, device="meta")
        plain.weight = nn.Parameter(residual, requires_grad=False)
        if layer.base.bias is not None:
            plain.bias = nn.Parameter(layer.base.bias.detach().clone(), requires_grad=False)
        layer.base = _quantize_like(plain, layer.base)
    else:
        layer.weight().copy_(residual)  # through the view: a Conv1D keeps it transposed


def apply_lora_init(model: nn.Module, config: LoraInitConfig) -> int:
    """Initialise every `LoraLinear` of `model` by `config`, in place; returns how many."""
    layers = lora_layers(model)
    for layer in layers:
        initialise(layer, config)
    return len(layers)
