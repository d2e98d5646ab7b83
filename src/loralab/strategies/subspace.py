"""Random-subspace training: learn d numbers that move all D weights of a network.

    W = W0 + P theta        theta in R^d starts at 0, P in R^(D x d) is fixed and random

Only theta trains; W0 stays frozen, and P is never stored: it is rebuilt from its seed, so a trained
model is its base, a seed and d floats (Li et al. 2018, "Measuring the Intrinsic Dimension of
Objective Landscapes"). The columns of P have unit length, so a step in theta moves the weights by
the same distance whatever D is. Four projections:

- dense:    Gaussian entries, each column normalised. O(D d) memory: small networks only.
- sparse:   +-1/sqrt(k) entries, k = sqrt(D) per column (Li, Hastie & Church 2006, "Very Sparse
            Random Projections"). O(d sqrt(D)) memory, a sparse matmul per step.
- fastfood: P = stack of blocks H G Pi H B on theta padded to d' = 2^ceil(log2 d) (Le, Sarlos &
            Smola 2013, "Fastfood"): H a Walsh-Hadamard transform, B random signs, Pi a random
            permutation, G Gaussian. O(D) memory and O(D log d') time per step.
- said:     fastfood plus one learned scale per weight tensor, W_i = W0_i + lambda_i P_i theta
            (Aghajanyan et al. 2020, "Intrinsic Dimensionality Explains the Effectiveness of
            Language Model Fine-Tuning", Sec. 3). As in the paper, the m scales come out of the
            budget: theta has d - m entries, so exactly d numbers train. lambda starts at 1.

Parameters named by `direct` (a task head, say) train normally, outside the subspace. Each
subspace weight becomes a parametrization (`torch.nn.utils.parametrize`) over a frozen buffer W0,
so the model stays an ordinary nn.Module: call it, and optimise the parameters that require grad.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from loralab.errors import LoralabError
from loralab.validate import number

WEIGHTS_FILE = "subspace.safetensors"
METADATA_FILE = "subspace.json"
FORMAT = "loralab-subspace/1"


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


@dataclass(frozen=True)
class SubspaceConfig:
    """Settings of random-subspace training."""

    dim: int
    """d: how many numbers train (with said, the per-tensor scales count towards it)."""
    projection: Projection = Projection.FASTFOOD
    """How P is built: dense, sparse, fastfood or said."""
    seed: int = 0
    """Seed of the torch.Generator that builds P; with theta it reproduces the trained model."""
    direct: tuple[str, ...] = ()
    """Parameter-name prefixes (module names, dot-bounded) trained directly, outside the subspace."""
    exclude: tuple[str, ...] = ()
    """Parameter-name prefixes left out of the subspace and frozen (e.g. a word-embedding table)."""

    def __post_init__(self):
        number("strategy.subspace.dim", self.dim, integer=True, low=1)
        object.__setattr__(self, "projection", Projection.parse(self.projection))
        number("strategy.subspace.seed", self.seed, integer=True, low=0, high=2**63 - 1)
        for field in ("direct", "exclude"):
            value = getattr(self, field)
            if not isinstance(value, (list, tuple)):
                raise LoralabError(f"invalid {field}={value!r}: expected a list of name prefixes")
            object.__setattr__(self, field, tuple(value))
            for prefix in getattr(self, field):
                if not isinstance(prefix, str) or not prefix or prefix.startswith(".") or prefix.endswith("."):
                    raise LoralabError(f"invalid {field} entry {prefix!r}: expected a module or parameter name")

    def to_dict(self) -> dict:
        return {"dim": self.dim, "projection": self.projection.value, "seed": self.seed, "direct": list(self.direct),
                "exclude": list(self.exclude)}


# ---------------------------------------------------------------------------------------------
# Projections. Each is built for the sizes of the subspace tensors, laid end to end as one flat
# vector of D weights, and returns one tensor's rows of P theta at a time.


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


# ---------------------------------------------------------------------------------------------
# The subspace on a model.


class Subspace(nn.Module):
    """theta (and the SAID scales) plus the projection, shared by the parametrizations of all tensors."""

    def __init__(self, config: SubspaceConfig, names: list[str], shapes: list[torch.Size], direct: list[str]):
        super().__init__()
        self.config = config
        self.names = tuple(names)
        self.shapes = tuple(tuple(s) for s in shapes)
        self.direct = tuple(direct)
        sizes = [math.prod(s) for s in self.shapes]
        self.total = sum(sizes)
        said = config.projection is Projection.SAID
        free = config.dim - len(names) if said else config.dim
        if free < 1:
            raise LoralabError(
                f"invalid dim={config.dim}: said spends one scale on each of the {len(names)} weight tensors, "
                f"so dim must exceed {len(names)}"
            )
        if free > self.total:
            raise LoralabError(f"invalid dim={config.dim}: the subspace has only D={self.total} weights")
        generator = torch.Generator().manual_seed(config.seed)
        self.projection = BUILDERS[config.projection](sizes, free, generator)
        self.theta = nn.Parameter(torch.zeros(free))
        self.scales = nn.Parameter(torch.ones(len(names))) if said else None

    def delta(self, index: int) -> torch.Tensor:
        """Rows of P theta for subspace tensor `index`, flat; times its scale under said."""
        rows = self.projection(self.theta, index)
        return rows if self.scales is None else rows * self.scales[index]

    @property
    def trainable(self) -> int:
        """Numbers that train in the subspace (theta plus scales); direct parameters not included."""
        return self.theta.numel() + (0 if self.scales is None else self.scales.numel())

    def extra_repr(self) -> str:
        return f"projection={self.config.projection.value}, d={self.trainable}, D={self.total}, seed={self.config.seed}"


class _Shift(nn.Module):
    """The parametrization of one subspace tensor: W0 -> W0 + (P theta) for its rows."""

    def __init__(self, subspace: Subspace, index: int, shape: tuple[int, ...]):
        super().__init__()
        # The first tensor's parametrization owns the Subspace, which puts theta among the model's
        # parameters (and moves it with `.to()`) without hanging a child on the model itself, where
        # an nn.Sequential would call it. The others see it through a tuple, which is no child.
        if index == 0:
            self.subspace = subspace
        self._subspace = (subspace,)
        self.index = index
        self.shape = shape

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        delta = self._subspace[0].delta(self.index).reshape(self.shape)  # (*tensor shape)
        return original + delta.to(original.dtype)


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _parameter_slots(model: nn.Module) -> dict[str, list[tuple[nn.Module, str]]]:
    """Each distinct parameter by its first name, with every (module, attribute) holding it: tied weights."""
    first_name = {id(p): name for name, p in model.named_parameters()}
    slots: dict[str, list[tuple[nn.Module, str]]] = {name: [] for name in first_name.values()}
    for module in model.modules():
        for local, p in module._parameters.items():
            if p is not None:
                slots[first_name[id(p)]].append((module, local))
    return slots


def apply_subspace(model: nn.Module, config: SubspaceConfig, *, exclude: tuple[str, ...] = ()) -> Subspace:
    """Put every parameter of `model` into one random subspace, in place, and return it.

    Parameters under `config.direct` keep training directly; those under `exclude` are frozen and
    left out of the subspace (both are dot-bounded name prefixes). Afterwards only theta, the SAID
    scales and the direct parameters require grad, and before training the model computes exactly
    what it computed before.
    """
    exclude = config.exclude + ((exclude,) if isinstance(exclude, str) else tuple(exclude))
    names = [name for name, _ in model.named_parameters()]
    for field, prefixes in (("direct", config.direct), ("exclude", exclude)):
        for prefix in prefixes:
            if not any(_matches(name, (prefix,)) for name in names):
                raise LoralabError(f"{field} entry {prefix!r} matches no parameter of this {type(model).__name__}")
    chosen = [n for n in names if not _matches(n, config.direct) and not _matches(n, exclude)]
    return _attach(model, config, chosen)


def _attach(model: nn.Module, config: SubspaceConfig, chosen: list[str]) -> Subspace:
    if any(isinstance(m, Subspace) for m in model.modules()):
        raise LoralabError(f"this {type(model).__name__} already has a subspace; apply it to a fresh model")
    slots = _parameter_slots(model)
    params = dict(model.named_parameters())
    chosen = [n for n in chosen if params[n].numel() > 0]
    if not chosen:
        raise LoralabError(f"no parameter of this {type(model).__name__} is left for the subspace")
    direct = [n for n in params if _matches(n, config.direct)]
    subspace = Subspace(config, chosen, [params[n].shape for n in chosen], direct)
    subspace.to(next(iter(params.values())).device)

    model.requires_grad_(False)
    for name in direct:
        params[name].requires_grad_(True)
    for index, name in enumerate(chosen):
        base = params[name].detach()
        shift = _Shift(subspace, index, tuple(base.shape))
        for module, local in slots[name]:
            # W0 becomes a buffer, so it can never reach an optimiser.
            del module._parameters[local]
            module.register_buffer(local, base)
            parametrize.register_parametrization(module, local, shift)
    return subspace


def subspace_of(model: nn.Module) -> Subspace:
    found = [m for m in model.modules() if isinstance(m, Subspace)]
    if not found:
        raise LoralabError(f"this {type(model).__name__} has no subspace; call apply_subspace first")
    return found[0]


# ---------------------------------------------------------------------------------------------
# Checkpoints: theta, scales and direct parameters in safetensors; everything else is metadata.


def save_subspace(folder: str | Path, model: nn.Module, *, base_model: str) -> Path:
    """Write the subspace of `model` to `folder`; `base_model` names the weights it was applied to."""
    subspace = subspace_of(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = dict(model.named_parameters())
    tensors = {"theta": subspace.theta.detach().cpu().contiguous()}
    if subspace.scales is not None:
        tensors["scales"] = subspace.scales.detach().cpu().contiguous()
    for name in subspace.direct:
        tensors[f"direct.{name}"] = params[name].detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "base_model": base_model,
        "config": subspace.config.to_dict(),
        "D": subspace.total,
        "d": subspace.trainable,
        "tensors": [{"name": n, "shape": list(s)} for n, s in zip(subspace.names, subspace.shapes)],
        "direct": [{"name": n, "shape": list(params[n].shape)} for n in subspace.direct],
    }
    save_file(tensors, str(folder / WEIGHTS_FILE))
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return folder


def read_subspace_metadata(folder: str | Path) -> dict:
    path = Path(folder) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise LoralabError(f"{path}: not found; is {folder} a subspace checkpoint?") from None
    except (OSError, json.JSONDecodeError) as e:
        raise LoralabError(f"{path}: cannot read as JSON ({e})") from None
    if metadata.get("format") != FORMAT:
        raise LoralabError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    return metadata


def load_subspace(folder: str | Path, model: nn.Module, *, base_model: str) -> Subspace:
    """Rebuild a saved subspace on a fresh copy of its base model, in place; returns the Subspace.

    `base_model` must be the identity given to `save_subspace`, and the model's tensors must match
    the recorded names and shapes: P is rebuilt from the seed, so it only fits the same layout.
    """
    folder = Path(folder)
    metadata = read_subspace_metadata(folder)
    if metadata["base_model"] != base_model:
        raise LoralabError(
            f"{folder}: saved for base model {metadata['base_model']!r}, but loading onto {base_model!r}"
        )
    config = SubspaceConfig(
        dim=metadata["config"]["dim"],
        projection=metadata["config"]["projection"],
        seed=metadata["config"]["seed"],
        direct=tuple(metadata["config"]["direct"]),
        exclude=tuple(metadata["config"].get("exclude", ())),
    )
    params = dict(model.named_parameters())
    direct = [name for name in params if _matches(name, config.direct)]
    if direct != [entry["name"] for entry in metadata["direct"]]:
        raise LoralabError(
            f"{folder}: the prefixes {list(config.direct)} select {direct} here, "
            f"{[entry['name'] for entry in metadata['direct']]} when saved"
        )
    for entry in metadata["tensors"] + metadata["direct"]:
        name, shape = entry["name"], tuple(entry["shape"])
        if name not in params:
            raise LoralabError(f"{folder}: the model has no parameter {name!r}")
        if tuple(params[name].shape) != shape:
            raise LoralabError(f"{folder}: {name} has shape {tuple(params[name].shape)} here, {shape} when saved")
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except (OSError, SafetensorError) as e:
        raise LoralabError(f"{folder / WEIGHTS_FILE}: cannot read ({e})") from None
    names = [entry["name"] for entry in metadata["tensors"]]
    said = config.projection is Projection.SAID
    expected = {"theta": (config.dim - len(names) if said else config.dim,)}
    if said:
        expected["scales"] = (len(names),)
    expected.update({f"direct.{name}": tuple(params[name].shape) for name in direct})
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    if found != expected:
        raise LoralabError(f"{folder / WEIGHTS_FILE}: holds {found}, expected {expected}")

    subspace = _attach(model, config, names)
    params = dict(model.named_parameters())
    with torch.no_grad():
        subspace.theta.copy_(tensors["theta"])
        if subspace.scales is not None:
            subspace.scales.copy_(tensors["scales"])
        for name in subspace.direct:
            params[name].copy_(tensors[f"direct.{name}"])
    return subspace
