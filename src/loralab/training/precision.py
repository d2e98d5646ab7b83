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
elsewhere it is emulated and far slower (an AMD EPYC with AVX2 only: 0.64 GFLOP/s in bf16 against 39 in
fp32, one thread, 1024 x 384 x 1536), so a bf16 run on such a CPU warns once (`warn_if_emulated`).
`benchmarks/training.py` measures both.
"""

from __future__ import annotations

import contextlib
import warnings
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


def _cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (oneDNN's check: AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def warn_if_emulated(precision: str | Precision, device: str | torch.device) -> None:
    """Warn when a bf16 run's products would be emulated: a CPU without AVX-512 BF16 or AMX."""
    if Precision(precision) is Precision.BF16 and torch.device(device).type == "cpu" and not _cpu_bf16():
        from loralab.machine import cpu_name

        warnings.warn(f"--precision bf16: this CPU ({cpu_name()}) has no native bf16 products (AVX-512 BF16 or "
                      "AMX), so they are emulated and can run many times slower than fp32 (60x measured on an AVX2 "
                      "AMD EPYC); --precision fp32 is faster here", stacklevel=2)
