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

Cost: P theta is computed once for all D weights whenever theta has changed (not once per tensor
per forward pass), and the gradient goes back the same way: each tensor's weight gradient is
written into one flat buffer as backward reaches it, and P^T is applied once, to the whole buffer,
when backward reaches theta (`_Project`, `_Shifted`). Letting autograd slice one flat P theta
instead would hand each slice's gradient back as a D-sized tensor of zeros, once per tensor.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from loralab.errors import LoralabError
from loralab.names import has_prefix
from loralab.settings.strategy import Projection, SubspaceConfig
from loralab.strategies.subspace.projections import BUILDERS
from loralab.validate import number


def _full_precision(device: torch.device):
    """Autocast turned off where autocast exists (CPU, CUDA); a model built on the meta device has none."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()




@dataclass
class _Current:
    """P theta for the theta it was computed from, and the gradient flowing back to it."""

    key: tuple
    """theta's identity and version when `delta` was computed."""
    delta: torch.Tensor
    """P theta, flat (D,)."""
    token: torch.Tensor | None = None
    """Autograd's link from every shifted weight back to theta (None: computed without grad)."""
    grad: torch.Tensor | None = None
    """The weights' gradient, flat (D,), filled tensor by tensor during backward (a reused buffer)."""
    written: set = field(default_factory=set)
    """The tensors whose gradient `grad` holds in this backward pass."""


class _Holder:
    """The cache: the current `_Current`, and two D-sized buffers that every step reuses (allocating
    fresh ones costs page faults over all D weights, twice a step). Kept out of deepcopy and pickling."""

    def __init__(self):
        self.current: _Current | None = None
        self.buffers: dict[str, torch.Tensor] = {}

    def buffer(self, name: str, like: torch.Tensor, size: int) -> torch.Tensor:
        held = self.buffers.get(name)
        if held is None or held.shape[0] != size or held.device != like.device or held.dtype != like.dtype:
            held = self.buffers[name] = like.new_empty(size)
        return held

    def __deepcopy__(self, memo):
        return _Holder()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


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
        self.ranges = tuple((end - size, end) for size, end in zip(sizes, itertools.accumulate(sizes)))
        self.theta = nn.Parameter(torch.zeros(free))
        self.scales = nn.Parameter(torch.ones(len(names))) if said else None
        self._cache = _Holder()

    def _current(self) -> _Current:
        """P theta for theta as it is now, computed only when theta changed (an optimizer step, a load)."""
        theta = self.theta
        # In-place updates (optimizer steps, load_state_dict) bump _version; a move to another device
        # changes the storage. A write through `theta.data` does neither: call `forget()` after one.
        key = (id(theta), theta._version, theta.data_ptr(), theta.device, theta.dtype)
        current = self._cache.current
        if current is None or current.key != key:
            with torch.no_grad(), _full_precision(theta.device):  # P theta in full precision
                # Written in place: a graph still holding the old rows (SAID saves them) then fails loudly on
                # backward, through autograd's version check, instead of using the new values.
                delta = self.projection.project(theta.detach(), out=self._cache.buffer("delta", theta, self.total))
                current = _Current(key, delta, grad=self._cache.buffer("grad", theta, self.total))
            self._cache.current = current
        if current.token is None and theta.requires_grad and torch.is_grad_enabled():
            current.token = _Project.apply(theta, self, current)
        return current

    def forget(self) -> None:
        """Drop the cached P theta (needed only after writing theta through `.data`)."""
        self._cache.current = None

    def shifted(self, original: torch.Tensor, index: int) -> torch.Tensor:
        """W0 + P theta for subspace tensor `index` (times its scale under said), shaped as `original`."""
        current = self._current()
        start, end = self.ranges[index]
        rows = current.delta[start:end].view(original.shape)  # (*tensor shape)
        scale = None if self.scales is None else self.scales[index]
        if current.token is None:  # no gradient reaches theta: plain autograd (the scale may still train)
            delta = rows if scale is None else rows * scale
            return original + delta.to(original.dtype)
        return _Shifted.apply(current.token, original, rows, scale, current, index, (start, end))

    def delta(self, index: int) -> torch.Tensor:
        """Rows of P theta for subspace tensor `index`, flat; times its scale under said."""
        start, end = self.ranges[index]
        rows = self._current().delta[start:end]
        return rows if self.scales is None else rows * self.scales[index]

    @property
    def trainable(self) -> int:
        """Numbers that train in the subspace (theta plus scales); direct parameters not included."""
        return self.theta.numel() + (0 if self.scales is None else self.scales.numel())

    def extra_repr(self) -> str:
        return f"projection={self.config.projection.value}, d={self.trainable}, D={self.total}, seed={self.config.seed}"


class _Project(torch.autograd.Function):
    """theta -> a token every shifted weight depends on; backward applies P^T once to all their gradients.

    Autograd runs this backward after every `_Shifted` backward that depends on the token, so the
    flat gradient is complete by then. Nothing is saved for backward, so a graph that is run
    backward twice (retain_graph) or reused by a second forward before theta changes works too:
    each backward pass applies P^T to what that pass wrote.
    """

    @staticmethod
    def forward(ctx, theta, subspace, current):
        ctx.subspace, ctx.current = subspace, current
        return theta.new_zeros(())

    @staticmethod
    def backward(ctx, _token_grad):
        current, subspace = ctx.current, ctx.subspace
        for index, (start, end) in enumerate(subspace.ranges):
            if index not in current.written:  # a tensor this pass never reached: no gradient
                current.grad[start:end].zero_()
        current.written.clear()
        with torch.autocast(current.grad.device.type, enabled=False):
            return subspace.projection.project_t(current.grad), None, None


class _Shifted(torch.autograd.Function):
    """W0 + rows (times the SAID scale); backward writes the weight gradient into the flat buffer."""

    @staticmethod
    def forward(ctx, token, original, rows, scale, current, index, span):
        ctx.current, ctx.index, ctx.span = current, index, span
        ctx.save_for_backward(rows if scale is not None else None, scale)  # rows only for the scale's gradient
        delta = rows if scale is None else rows * scale
        return original + delta.to(original.dtype)

    @staticmethod
    def backward(ctx, grad):
        rows, scale = ctx.saved_tensors
        current, index = ctx.current, ctx.index
        start, end = ctx.span
        flat = (grad if scale is None else grad * scale).reshape(-1).to(current.grad.dtype)
        if index in current.written:  # tied weights: one tensor of the subspace used twice
            current.grad[start:end] += flat
        else:
            current.grad[start:end].copy_(flat)
            current.written.add(index)
        grad_scale = (grad * rows).sum().to(scale.dtype) if scale is not None and ctx.needs_input_grad[3] else None
        grad_original = grad if ctx.needs_input_grad[1] else None
        return grad.new_zeros(()), grad_original, None, grad_scale, None, None, None


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
        return self._subspace[0].shifted(original, self.index)


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
