"""Random projections P in R^(D x d) for subspace training, rebuilt from a seed and never stored.

Each is built for the sizes of the subspace tensors, laid end to end as one flat vector of D
weights, and returns one tensor's rows of P theta at a time. The columns of P have unit length,
so a step in theta moves the weights by the same distance whatever D is.

- dense:    Gaussian entries, each column normalised. O(D d) memory: small networks only.
- sparse:   +-1/sqrt(k) entries, k = sqrt(D) per column (Li, Hastie & Church 2006, "Very Sparse
            Random Projections"). O(d sqrt(D)) memory, a sparse matmul per step.
- fastfood: P = stack of blocks H G Pi H B on theta padded to d' = 2^ceil(log2 d) (Le, Sarlos &
            Smola 2013, "Fastfood"): H a Walsh-Hadamard transform, B random signs, Pi a random
            permutation, G Gaussian. O(D) memory and O(D log d') time per step.
- said:     fastfood's P; the per-tensor scales that make it SAID (Aghajanyan et al. 2020) train
            beside theta, in `attach.py`.
"""

from __future__ import annotations

import enum
import math

import torch
from torch import nn

from loralab.errors import LoralabError


class Projection(enum.Enum):
    DENSE = "dense"
    SPARSE = "sparse"
    FASTFOOD = "fastfood"
    SAID = "said"

    @classmethod
    def parse(cls, value: "str | Projection") -> "Projection":
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except (ValueError, TypeError):
            raise LoralabError(
                f"invalid projection={value!r}: choose one of {', '.join(p.value for p in cls)}"
            ) from None


RADIX_BITS = 5  # Hadamard stages of up to 32 x 32: few, BLAS-sized steps instead of log2(n) tiny ones


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh-Hadamard transform of the last axis (length n, a power of 2): x @ H_n.

    H_n is a Kronecker power of [[1, 1], [1, -1]], so for n = f1 * f2 * ... it factors as
    H_f1 (x) H_f2 (x) ...: view the axis as (f1, f2, ...), apply each small H_f along its own axis,
    and the result is the full transform in O(n log n). Each stage is one matmul on the last axis,
    then a rotation that brings the next axis last; its backward is a matmul too.
    """
    n = x.shape[-1]
    lead = x.shape[:-1]
    bits = n.bit_length() - 1
    stages = -(-bits // RADIX_BITS)
    y = x.reshape(-1, n)
    m = y.shape[0]
    for i in range(stages):
        f = 1 << (bits * (i + 1) // stages - bits * i // stages)
        y = y.reshape(-1, f) @ _sylvester(f, y.dtype, y.device)  # (m * n / f, f): H_f on the last axis
        y = y.reshape(m, n // f, f).transpose(1, 2)  # (m, f, n / f): that axis moves first
    return y.reshape(*lead, n)


_SYLVESTER: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _sylvester(f: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (f, dtype, device)
    if key not in _SYLVESTER:
        h = torch.ones(1, 1, dtype=dtype)
        while h.shape[0] < f:
            h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
        _SYLVESTER[key] = h.to(device)
    return _SYLVESTER[key]


def _ranges(sizes: list[int]) -> list[tuple[int, int]]:
    ends = torch.tensor(sizes).cumsum(0).tolist()
    return [(end - size, end) for size, end in zip(sizes, ends)]


class DenseProjection(nn.Module):
    """P with i.i.d. Gaussian entries, each column scaled to unit length."""

    def __init__(self, sizes: list[int], dim: int, generator: torch.Generator):
        super().__init__()
        total = sum(sizes)
        matrix = torch.randn(total, dim, generator=generator)
        matrix /= matrix.norm(dim=0, keepdim=True)
        self.register_buffer("matrix", matrix, persistent=False)
        self.ranges = _ranges(sizes)

    def forward(self, theta: torch.Tensor, index: int) -> torch.Tensor:
        start, end = self.ranges[index]
        return self.matrix[start:end] @ theta


class SparseProjection(nn.Module):
    """P with k = round(sqrt(D)) nonzeros +-1/sqrt(k) per column, so every column has unit length.

    Li et al. 2006 draw each entry independently (nonzero with probability 1/sqrt(D)); here each
    column takes one nonzero in each of k strata of about sqrt(D) consecutive rows. The density is
    the same, no row is drawn twice, and every tensor gets nonzeros in proportion to its size.
    """

    def __init__(self, sizes: list[int], dim: int, generator: torch.Generator):
        super().__init__()
        total = sum(sizes)
        k = max(1, round(math.sqrt(total)))
        bounds = torch.arange(k + 1, dtype=torch.float64).mul(total / k).floor().long()  # (k + 1,)
        start, width = bounds[:-1], bounds[1:] - bounds[:-1]
        offset = (torch.rand(dim, k, generator=generator, dtype=torch.float64) * width).long()  # (dim, k)
        rows = start + offset.clamp_max(width - 1)
        signs = torch.randint(0, 2, (dim, k), generator=generator).float() * 2 - 1
        cols = torch.arange(dim).unsqueeze(1).expand(dim, k)
        order = torch.argsort(rows.reshape(-1), stable=True)
        rows, cols = rows.reshape(-1)[order], cols.reshape(-1)[order]  # (dim * k,) sorted by row
        values = signs.reshape(-1)[order] / math.sqrt(k)
        self.ranges = _ranges(sizes)
        for i, (lo, hi) in enumerate(self.ranges):
            a, b = torch.searchsorted(rows, torch.tensor([lo, hi])).tolist()
            block = torch.sparse_coo_tensor(
                torch.stack((rows[a:b] - lo, cols[a:b])), values[a:b], (hi - lo, dim), check_invariants=False
            ).coalesce()
            self.register_buffer(f"rows_{i}", block, persistent=False)

    def forward(self, theta: torch.Tensor, index: int) -> torch.Tensor:
        block = getattr(self, f"rows_{index}")
        return torch.sparse.mm(block, theta.unsqueeze(1)).squeeze(1)


class FastfoodProjection(nn.Module):
    """P = stacked blocks H G Pi H B acting on theta zero-padded to a power of 2 (Le et al. 2013).

    Block b maps theta' in R^n (n = 2^ceil(log2 d)) to n rows of P theta; ceil(D / n) blocks cover
    all D weights and the last is cut. Every column of a block has the same length,
    sqrt(n) * |g_b|, so dividing by it and by sqrt(D / n) gives unit-norm columns: exactly when
    n divides D, and in expectation over the cut last block otherwise.
    """

    def __init__(self, sizes: list[int], dim: int, generator: torch.Generator):
        super().__init__()
        total = sum(sizes)
        self.n = 1 << max(0, dim - 1).bit_length()
        blocks = -(-total // self.n)
        signs = (torch.rand(blocks, self.n, generator=generator) < 0.5).float() * 2 - 1
        permutation = torch.argsort(torch.rand(blocks, self.n, generator=generator), dim=1)
        gauss = torch.randn(blocks, self.n, generator=generator)
        gauss /= gauss.norm(dim=1, keepdim=True) * math.sqrt(self.n) * math.sqrt(total / self.n)
        self.register_buffer("signs", signs, persistent=False)  # B, (blocks, n)
        self.register_buffer("permutation", permutation, persistent=False)  # Pi, (blocks, n)
        self.register_buffer("gauss", gauss, persistent=False)  # G with the normalisation folded in
        self.ranges = _ranges(sizes)

    def forward(self, theta: torch.Tensor, index: int) -> torch.Tensor:
        start, end = self.ranges[index]
        first, last = start // self.n, (end - 1) // self.n + 1  # the blocks this tensor's rows fall in
        padded = nn.functional.pad(theta, (0, self.n - theta.shape[0]))
        x = hadamard(self.signs[first:last] * padded)  # (blocks, n)
        x = torch.gather(x, 1, self.permutation[first:last]) * self.gauss[first:last]
        x = hadamard(x).reshape(-1)  # (blocks * n,)
        return x[start - first * self.n : end - first * self.n]


BUILDERS: dict[Projection, type[nn.Module]] = {
    Projection.DENSE: DenseProjection,
    Projection.SPARSE: SparseProjection,
    Projection.FASTFOOD: FastfoodProjection,
    Projection.SAID: FastfoodProjection,
}
