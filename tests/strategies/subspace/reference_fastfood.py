"""The Fastfood transform as loralab first computed it, kept as the reference the fast one must equal.

Per tensor and pass by pass: pad theta, multiply by the signs of the blocks the tensor's rows fall
in, Walsh-Hadamard (radix-32 stages, each a product then a transposed copy), permute, scale,
Walsh-Hadamard again, cut the tensor's rows out. Gradients come from autograd through these steps.
It reads the buffers of a `FastfoodProjection`, so the same seed gives the same B, Pi and G.
"""

from __future__ import annotations

import torch
from torch import nn

from loralab.strategies.subspace.projections import FastfoodProjection, _sylvester


def hadamard(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    lead = x.shape[:-1]
    bits = n.bit_length() - 1
    stages = -(-bits // 5)
    y = x.reshape(-1, n)
    m = y.shape[0]
    for i in range(stages):
        f = 1 << (bits * (i + 1) // stages - bits * i // stages)
        y = y.reshape(-1, f) @ _sylvester(f, y.dtype, y.device)  # (m * n / f, f): H_f on the last axis
        y = y.reshape(m, n // f, f).transpose(1, 2)  # (m, f, n / f): that axis moves first
    return y.reshape(*lead, n)


def rows(projection: FastfoodProjection, theta: torch.Tensor, index: int) -> torch.Tensor:
    """Tensor `index`'s rows of P theta, computed the original way (differentiable in theta)."""
    n = projection.n
    start, end = projection.ranges[index]
    first, last = start // n, (end - 1) // n + 1  # the blocks this tensor's rows fall in
    padded = nn.functional.pad(theta, (0, n - theta.shape[0]))
    x = hadamard(projection.signs[first:last] * padded)  # (blocks, n)
    x = torch.gather(x, 1, projection.permutation[first:last]) * projection.gauss[first:last]
    x = hadamard(x).reshape(-1)  # (blocks * n,)
    return x[start - first * n : end - first * n]


def project(projection: FastfoodProjection, theta: torch.Tensor) -> torch.Tensor:
    """All of P theta (D,), tensor by tensor."""
    return torch.cat([rows(projection, theta, i) for i in range(len(projection.ranges))])
