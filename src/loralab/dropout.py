"""Dropout (Srivastava et al. 2014) with fast CPU masks.

On CPU torch draws one 32-bit random number per element for a dropout mask (`bernoulli_`); this
draws 64-bit numbers and reads four 16-bit ones out of each, comparing them against p scaled to
65,536. The mask is the same Bernoulli(1 - p) keep mask, with p rounded to a multiple of 1 / 65,536
(0.1 -> 0.100006), seeded by torch's generator like any other; kept values are scaled by 1 / (1 - p).
Elsewhere (CUDA) torch's own dropout is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """What `module` (an `nn.Dropout`, or `nn.Identity` for none) does to x, with a fast mask on CPU."""
    p = getattr(module, "p", 0.0)
    if not module.training or p == 0:
        return x
    if x.device.type != "cpu" or p >= 1:
        return F.dropout(x, p, training=True)
    count = x.numel()
    bits = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-2**63, 2**63 - 1)  # 64 random bits each
    keep = bits.view(torch.int16)[:count].view(x.shape) >= -32768 + round(p * 65536)  # P(keep) = 1 - p
    return x * keep.to(x.dtype).mul_(1 / (1 - p))
