"""Random-subspace training: learn d numbers that move all D weights of a network.

    W = W0 + P theta        theta in R^d starts at 0, P in R^(D x d) is fixed and random

Only theta trains; W0 stays frozen, and P is never stored: it is rebuilt from its seed
(`projections.py`), so a trained model is its base, a seed and d floats (Li et al. 2018, "Measuring
the Intrinsic Dimension of Objective Landscapes"). With the said projection each weight tensor also
gets one learned scale, W_i = W0_i + lambda_i P_i theta (Aghajanyan et al. 2020, "Intrinsic
Dimensionality Explains the Effectiveness of Language Model Fine-Tuning", Sec. 3). As in the paper,
the m scales come out of the budget: theta has d - m entries, so exactly d numbers train. lambda
starts at 1.

Parameters named as the `head` (the task head, when it trains) train normally, outside the subspace. Each
subspace weight becomes a parametrization (`torch.nn.utils.parametrize`) over a frozen buffer W0,
so the model stays an ordinary nn.Module: call it, and optimise the parameters that require grad.
`merge_subspace` evaluates W0 + P theta once and gives the model back its plain weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from loralab.errors import LoralabError
from loralab.names import has_prefix
from loralab.strategies.subspace.projections import BUILDERS, Projection
from loralab.validate import number


@dataclass(frozen=True)
class SubspaceConfig:
    """Settings of random-subspace training."""

    dim: int
    """d: how many numbers train (with said, the per-tensor scales count towards it)."""
    projection: Projection = Projection.FASTFOOD
    """How P is built: dense, sparse, fastfood or said."""
    seed: int = 0
    """Seed of the torch.Generator that builds P; with theta it reproduces the trained model."""
    exclude: tuple[str, ...] = ()
    """Parameter-name prefixes left out of the subspace and frozen (e.g. a word-embedding table)."""

    def __post_init__(self):
        number("strategy.subspace.dim", self.dim, integer=True, low=1)
        object.__setattr__(self, "projection", Projection.parse(self.projection))
        number("strategy.subspace.seed", self.seed, integer=True, low=0, high=2**63 - 1)
        for field in ("exclude",):
            value = getattr(self, field)
            if not isinstance(value, (list, tuple)):
                raise LoralabError(f"invalid {field}={value!r}: expected a list of name prefixes")
            object.__setattr__(self, field, tuple(value))
            for prefix in getattr(self, field):
                if not isinstance(prefix, str) or not prefix or prefix.startswith(".") or prefix.endswith("."):
                    raise LoralabError(f"invalid {field} entry {prefix!r}: expected a module or parameter name")

    def to_dict(self) -> dict:
        return {"dim": self.dim, "projection": self.projection.value, "seed": self.seed, 
                "exclude": list(self.exclude)}


class Subspace(nn.Module):
    """theta (and the SAID scales) plus the projection, shared by the parametrizations of all tensors."""

    def __init__(self, config: SubspaceConfig, names: list[str], shapes: list[torch.Size]):
        super().__init__()
        self.config = config
        self.names = tuple(names)
        sizes = [math.prod(s) for s in shapes]
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


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(has_prefix(name, p) for p in prefixes)


def _parameter_slots(model: nn.Module) -> dict[str, list[tuple[nn.Module, str]]]:
    """Each distinct parameter by its first name, with every (module, attribute) holding it: tied weights."""
    first_name = {id(p): name for name, p in model.named_parameters()}
    slots: dict[str, list[tuple[nn.Module, str]]] = {name: [] for name in first_name.values()}
    for module in model.modules():
        for local, p in module._parameters.items():
            if p is not None:
                slots[first_name[id(p)]].append((module, local))
    return slots


def apply_subspace(model: nn.Module, config: SubspaceConfig, *, head: tuple[str, ...] = (),
                   exclude: tuple[str, ...] = ()) -> Subspace:
    """Put every parameter of `model` into one random subspace, in place, and return it.

    Parameters under `head` (the task head, when it trains) keep training directly, beside the
    subspace; those under `exclude` are frozen and left out of it (both are dot-bounded name
    prefixes). Afterwards only theta, the SAID scales and the head require grad, and before
    training the model computes exactly what it computed before.
    """
    head = (head,) if isinstance(head, str) else tuple(head)
    exclude = config.exclude + ((exclude,) if isinstance(exclude, str) else tuple(exclude))
    names = [name for name, _ in model.named_parameters()]
    for field, prefixes in (("head", head), ("exclude", exclude)):
        for prefix in prefixes:
            if not any(has_prefix(name, prefix) for name in names):
                raise LoralabError(f"{field} entry {prefix!r} matches no parameter of this {type(model).__name__}")
    if any(isinstance(m, Subspace) for m in model.modules()):
        raise LoralabError(f"this {type(model).__name__} already has a subspace; apply it to a fresh model")
    slots = _parameter_slots(model)
    params = dict(model.named_parameters())
    chosen = [n for n in names if not _under(n, head) and not _under(n, exclude) and params[n].numel() > 0]
    if not chosen:
        raise LoralabError(f"no parameter of this {type(model).__name__} is left for the subspace")
    direct = [n for n in params if _under(n, head)]
    subspace = Subspace(config, chosen, [params[n].shape for n in chosen])
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


def merge_subspace(model: nn.Module) -> None:
    """Merge the subspace into the weights: each parametrized tensor becomes its current W0 + P theta, in place.

    The value stays a frozen parameter under its original name, as in the base model; weights tied
    before the subspace was applied come out as separate copies.
    """
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        for name in list(module.parametrizations):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
            value = getattr(module, name).detach()
            delattr(module, name)  # W0 may have been a buffer: make it a parameter again, as in the base model
            module.register_parameter(name, nn.Parameter(value, requires_grad=False))
