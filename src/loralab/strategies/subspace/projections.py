"""Random projections P in R^(D x d) for subspace training, rebuilt from a seed and never stored.

Each is built for the sizes of the subspace tensors, laid end to end as one flat vector of D
weights: `project(theta)` is all of P theta (D,), `project_t(g)` is P^T g (d,), the gradient's
way back, and calling it with (theta, index) gives one tensor's rows of P theta. The columns of P
have unit length, so a step in theta moves the weights by the same distance whatever D is.

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
from loralab.settings.strategy import Projection




RADIX_BITS = 5  # Hadamard factors of up to 32 x 32: few, BLAS-sized products instead of log2(n) tiny ones
CHUNK_BYTES = 1 << 20  # on CPU, Fastfood works through its blocks this many bytes at a time, so each block's
# whole transform (sign, H, permute, scale, H) runs in cache and memory sees one read and one write per step


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh-Hadamard transform of the last axis (length n, a power of 2): x @ H_n.

    H_n is a Kronecker power of [[1, 1], [1, -1]], so for n = f1 * f2 * ... it factors as
    H_f1 (x) H_f2 (x) ...: view the axis as (f1, f2, ...) and apply each small H_f along its own
    axis, O(n log n) in all. Each factor is one matrix product on the axis where it sits, H_f
    multiplying from the left for the leading axes and from the right for the last, so no axis is
    ever moved (no transposed copies). H_f is symmetric, so the backward is the same transform.
    """
    n = x.shape[-1]
    bits = n.bit_length() - 1
    stages = -(-bits // RADIX_BITS)
    factors = [1 << (bits * (i + 1) // stages - bits * i // stages) for i in range(stages)]
    m = x.numel() // n
    y = x.reshape(m, n)
    inner = n
    for f in factors:  # a row viewed as (outer, f, inner): f's axis, with the axes before and after it
        inner //= f
        if inner == 1:
            y = y.reshape(-1, f) @ _sylvester(f, y.dtype, y.device)  # (m * n / f, f): H_f on the last axis
        else:
            y = torch.matmul(_sylvester(f, y.dtype, y.device), y.reshape(-1, f, inner))  # (m * outer, f, inner)
    return y.reshape(x.shape)


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

    def project(self, theta: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.mv(self.matrix, theta, out=out)  # (D,)

    def project_t(self, grad: torch.Tensor) -> torch.Tensor:
        return grad @ self.matrix  # (d,)


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
        self.ranges, self.dim = _ranges(sizes), dim
        for i, (lo, hi) in enumerate(self.ranges):
            a, b = torch.searchsorted(rows, torch.tensor([lo, hi])).tolist()
            block = torch.sparse_coo_tensor(
                torch.stack((rows[a:b] - lo, cols[a:b])), values[a:b], (hi - lo, dim), check_invariants=False
            ).coalesce()
            self.register_buffer(f"rows_{i}", block, persistent=False)

    def forward(self, theta: torch.Tensor, index: int) -> torch.Tensor:
        block = getattr(self, f"rows_{index}")
        return torch.sparse.mm(block, theta.unsqueeze(1)).squeeze(1)

    def project(self, theta: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([self(theta, i) for i in range(len(self.ranges))], out=out)  # (D,)

    def project_t(self, grad: torch.Tensor) -> torch.Tensor:
        out = grad.new_zeros(self.dim)
        for i, (start, end) in enumerate(self.ranges):
            block = getattr(self, f"rows_{i}")
            out += torch.sparse.mm(block.t(), grad[start:end].unsqueeze(1)).squeeze(1)
        return out  # (d,)


class FastfoodProjection(nn.Module):
    """P = stacked blocks H G Pi H B acting on theta zero-padded to a power of 2 (Le et al. 2013).

    Block b maps theta' in R^n (n = 2^ceil(log2 d)) to n rows of P theta; ceil(D / n) blocks cover
    all D weights and the last is cut. Every column of a block has the same length,
    sqrt(n) * |g_b|, so dividing by it and by sqrt(D / n) gives unit-norm columns: exactly when
    n divides D, and in expectation over the cut last block otherwise.

    `project` computes all of P theta at once and `project_t` all of P^T g (= sum over blocks of
    B H Pi^T G H g_b, cut to d), a few blocks at a time (`CHUNK_BYTES`), so that a block's five
    steps run in cache instead of each step streaming all D weights through memory.
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
        self.ranges, self.dim, self.total = _ranges(sizes), dim, total

    def forward(self, theta: torch.Tensor, index: int) -> torch.Tensor:
        start, end = self.ranges[index]
        return self.project(theta)[start:end]

    def _chunks(self, device: torch.device) -> list[tuple[int, int]]:
        blocks = self.signs.shape[0]
        rows = blocks if device.type != "cpu" else max(1, CHUNK_BYTES // (4 * self.n))
        return [(lo, min(lo + rows, blocks)) for lo in range(0, blocks, rows)]

    def project(self, theta: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """P theta, (D,), into `out` when given."""
        n, total = self.n, self.total
        padded = nn.functional.pad(theta, (0, n - theta.shape[0]))  # (n,)
        out = theta.new_empty(total) if out is None else out
        for lo, hi in self._chunks(theta.device):
            x = hadamard(self.signs[lo:hi] * padded)  # H B theta', (rows, n)
            x = torch.gather(x, 1, self.permutation[lo:hi]).mul_(self.gauss[lo:hi])  # G Pi
            x = hadamard(x).view(-1)  # (rows * n,)
            out[lo * n : hi * n] = x[: min(hi * n, total) - lo * n]  # the last block is cut at D
        return out

    def project_t(self, grad: torch.Tensor) -> torch.Tensor:
        out = grad.new_zeros(self.n)
        for lo, hi in self._chunks(grad.device):
            g = grad[lo * self.n : hi * self.n]
            if g.shape[0] < (hi - lo) * self.n:  # the cut last block: its missing rows have no gradient
                g = nn.functional.pad(g, (0, (hi - lo) * self.n - g.shape[0]))
            y = hadamard(g.view(hi - lo, self.n)).mul_(self.gauss[lo:hi])  # G H g, (rows, n)
            y = torch.empty_like(y).scatter_(1, self.permutation[lo:hi], y)  # Pi^T: gather's adjoint
            out += hadamard(y).mul_(self.signs[lo:hi]).sum(0)  # B H, summed over the blocks
        return out[: self.dim]  # (d,)


BUILDERS: dict[Projection, type[nn.Module]] = {
    Projection.DENSE: DenseProjection,
    Projection.SPARSE: SparseProjection,
    Projection.FASTFOOD: FastfoodProjection,
    Projection.SAID: FastfoodProjection,
}
