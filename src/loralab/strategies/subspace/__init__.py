"""Random-subspace training, W = W0 + P theta: the random projections P (`projections`) and a subspace
attached to a model (`attach`). A subspace run is saved like any other run (`loralab.runs`): its config,
with the seed that rebuilds P, and the tensors that trained."""

from loralab.strategies.subspace.attach import Subspace, SubspaceConfig, apply_subspace, merge_subspace, subspace_of
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
    "merge_subspace",
    "subspace_of",
]
