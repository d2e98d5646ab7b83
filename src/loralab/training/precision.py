"""Mixed precision: compute in bfloat16, keep fp32 master weights and optimizer state.

Under `--precision bf16` the forward pass (and so the backward, which autograd runs in the dtypes
the forward chose) runs in `torch.autocast(device, dtype=torch.bfloat16)`: matrix products and
attention take bf16 inputs and accumulate in fp32 inside the kernel, while reductions, softmax
statistics, LayerNorm and the loss stay in fp32 (Micikevicius et al. 2018, "Mixed Precision
Training"; bf16 keeps fp32's exponent range, so no loss scaling is needed, Kalamkar et al. 2019).
Parameters are never converted: what trains keeps an fp32 copy that AdamW updates in fp32, and its
gradients arrive in fp32 (autocast's casts are differentiable and cast the gradient back).
What the bf16 path adds on top of autocast, none of it in fp32 runs: AdamW takes torch's fused kernel
on a CPU too (`optimizer.py`), and the packed forward casts each layer's fp32 residual stream once for
the products that read it and builds its attention mask in bf16 (`loralab.models.packed`).

On CPUs with AVX-512 BF16 (and on any recent GPU) a bf16 product runs about twice the fp32 rate;
elsewhere it may be slower, which `benchmarks/training.py` measures.
"""

from __future__ import annotations

import contextlib
from enum import Enum

import torch


class Precision(str, Enum):
    """How a run computes: fp32 throughout, or bf16 compute with fp32 master weights."""

    FP32 = "fp32"
    BF16 = "bf16"


PRECISIONS = tuple(p.value for p in Precision)


def autocast(precision: str | Precision, device: str | torch.device):
    """The context a forward pass runs in: bf16 autocast on `device`'s type, or nothing for fp32."""
    if Precision(precision) is Precision.FP32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
