"""Random projections: unit-norm columns, the promised sparsity, Fastfood equals its dense form, seeded rebuilds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loralab.strategies.subspace.projections import BUILDERS, FastfoodProjection, Projection, _sylvester, hadamard
from loralab.strategies.subspace import projections
import reference_fastfood
from tiny_networks import one_thread  # noqa: F401  (autouse fixture)


def explicit(projection: nn.Module, sizes: list[int], dim: int) -> torch.Tensor:
    """The D x d matrix P, column by column: P e_j."""
    columns = []
    for j in range(dim):
        e = torch.zeros(dim)
        e[j] = 1
        columns.append(torch.cat([projection(e, i) for i in range(len(sizes))]))
    return torch.stack(columns, dim=1)  # (D, d)


@pytest.mark.parametrize("kind", [Projection.DENSE, Projection.SPARSE, Projection.FASTFOOD])
@pytest.mark.parametrize("sizes", [[48, 80], [300, 700, 24]])  # D = 128 (a multiple of n), 1024 (and cut tensors)
def test_projection_columns_have_unit_norm(kind, sizes):
    dim = 10
    projection = BUILDERS[kind](sizes, dim, torch.Generator().manual_seed(0))
    norms = explicit(projection, sizes, dim).norm(dim=0)
    assert torch.allclose(norms, torch.ones(dim), atol=1e-5), norms


def test_fastfood_columns_have_unit_norm_on_average_when_the_last_block_is_cut():
    sizes, dim = [500, 477], 10  # D = 977: the last 16-row block keeps 1 row
    norms = explicit(FastfoodProjection(sizes, dim, torch.Generator().manual_seed(0)), sizes, dim).norm(dim=0)
    assert torch.allclose(norms, torch.ones(dim), atol=0.05), norms


def test_sparse_projection_has_about_sqrt_d_nonzeros_per_column():
    sizes, dim = [900, 700], 8
    matrix = explicit(BUILDERS[Projection.SPARSE](sizes, dim, torch.Generator().manual_seed(0)), sizes, dim)
    assert ((matrix != 0).sum(dim=0) == 40).all()  # round(sqrt(1600))


def test_hadamard_matches_sylvester_matrix():
    for n in (1, 2, 8, 64, 2048):
        x = torch.randn(3, n, dtype=torch.float64)
        assert torch.allclose(hadamard(x), x @ _sylvester(n, torch.float64, torch.device("cpu")))


def test_fastfood_equals_an_explicit_dense_build():
    sizes, dim = [40, 30], 6  # n = 8, ceil(70 / 8) = 9 blocks, the last one cut
    projection = FastfoodProjection(sizes, dim, torch.Generator().manual_seed(5))
    n = projection.n
    hadamard_matrix = _sylvester(n, torch.float32, torch.device("cpu"))
    blocks = []
    for b in range(projection.signs.shape[0]):
        permutation = torch.eye(n)[projection.permutation[b]]  # (Pi v)_i = v_perm[i]
        block = hadamard_matrix @ torch.diag(projection.gauss[b]) @ permutation @ hadamard_matrix
        blocks.append(block @ torch.diag(projection.signs[b]))  # H G Pi H B, (n, n)
    dense = torch.cat(blocks)[: sum(sizes), :dim]  # (D, d): theta's padding meets the last n - d columns
    assert torch.allclose(explicit(projection, sizes, dim), dense, atol=1e-5)


@pytest.mark.parametrize("kind", list(Projection))
def test_projection_is_rebuilt_identically_from_its_seed(kind):
    sizes = [100, 60]
    first, second, other = (BUILDERS[kind](sizes, 8, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(explicit(first, sizes, 8), explicit(second, sizes, 8))
    assert not torch.equal(explicit(first, sizes, 8), explicit(other, sizes, 8))


# (tensor sizes, d, bytes per chunk): n = 8 with a cut last block; n = 1024 over 5 blocks, one or several
# blocks per chunk and a cut last chunk; n = 16384 as on MiniLM at d = 10,000, over 3 blocks.
FAST_CASES = [([40, 30], 6, 1 << 20), ([3000, 100, 2000], 1000, 1 << 20), ([3000, 100, 2000], 1000, 8192),
              ([20000, 7, 19000], 10_000, 1 << 20)]


@pytest.mark.parametrize("sizes,dim,chunk", FAST_CASES)
def test_fast_fastfood_equals_the_original_transform(sizes, dim, chunk, monkeypatch):
    """P theta and P^T g, computed a few blocks at a time, equal the original per-tensor transform and its
    autograd gradient within float rounding, for the same seed."""
    monkeypatch.setattr(projections, "CHUNK_BYTES", chunk)
    projection = FastfoodProjection(sizes, dim, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(dim, generator=g, dtype=torch.float32).requires_grad_(True)
    upstream = torch.randn(sum(sizes), generator=g)
    reference = reference_fastfood.project(projection, theta)
    (want,) = torch.autograd.grad(reference, theta, upstream)
    fast = projection.project(theta.detach())
    scale = reference.abs().max().item()
    assert fast.shape == reference.shape and torch.allclose(fast, reference, rtol=1e-5, atol=1e-6 * scale)
    got = projection.project_t(upstream)
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())
    for i, (start, end) in enumerate(projection.ranges):  # the per-tensor call is the same rows
        assert torch.equal(projection(theta.detach(), i), fast[start:end])


def test_reference_hadamard_is_the_same_transform():
    x = torch.randn(4, 4096, dtype=torch.float64)
    assert torch.allclose(hadamard(x), reference_fastfood.hadamard(x))


@pytest.mark.parametrize("kind", [Projection.DENSE, Projection.SPARSE])
def test_project_and_its_transpose_match_the_explicit_matrix(kind):
    sizes, dim = [300, 700, 24], 10
    projection = BUILDERS[kind](sizes, dim, torch.Generator().manual_seed(0))
    matrix = explicit(projection, sizes, dim)  # (D, d)
    theta, grad = torch.randn(dim), torch.randn(sum(sizes))
    assert torch.allclose(projection.project(theta), matrix @ theta, atol=1e-6)
    assert torch.allclose(projection.project_t(grad), matrix.t() @ grad, atol=1e-5)
