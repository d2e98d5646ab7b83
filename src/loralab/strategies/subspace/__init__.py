"""Random-subspace training, W = W0 + P theta: the random projections P (`projections`), a subspace
attached to a model (`attach`) and its standalone checkpoint format (`checkpoint`)."""

from loralab.strategies.subspace.attach import Subspace, SubspaceConfig, apply_subspace, subspace_of
from loralab.strategies.subspace.checkpoint import load_subspace, read_subspace_metadata, save_subspace
from loralab.strategies.subspace.projections import (
    BUILDERS,
    DenseProjection,
    FastfoodProjection,
    Projection,
    SparseProjection,
    hadamard,
)

__all__ = [
    "BUILDERS",
    "DenseProjection",
    "FastfoodProjection",
    "Projection",
    "SparseProjection",
    "Subspace",
    "SubspaceConfig",
    "apply_subspace",
    "hadamard",
    "load_subspace",
    "read_subspace_metadata",
    "save_subspace",
    "subspace_of",
]
