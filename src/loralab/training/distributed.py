"""Data-parallel training across processes: torch.distributed's DDP, or FSDP2 for models that do not fit.

`torchrun --nproc_per_node N -m loralab train ...` starts N processes (ranks); each runs the same
loop. Every rank draws the same global batches (the same seed, `batch_size x N` examples each, length
grouped as in one process), keeps a near-equal contiguous slice of each, and scales its mean loss
L_r over n_r examples by its share s_r = N n_r / n. The gradients are then averaged over ranks, so

    (1/N) sum_r grad(s_r L_r) = sum_r (n_r / n) grad L_r = grad L,

the gradient of the global batch's mean loss: N processes x batch b take the optimizer steps one
process x batch N b takes, also on a short last batch. A rank left without an example (a last batch
smaller than N) runs one with share 0, since every rank must join every reduction.

Only what trains is reduced: DDP (Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating
Data Parallel Training") buckets the gradients of parameters that require grad, so a LoRA run moves
kilobytes per step where a full run moves the whole model. FSDP2 (`fully_shard`; Zhao et al. 2023,
"PyTorch FSDP") keeps 1/N of every parameter, gradient and optimizer state on each rank, gathers a
layer's weights just before it computes and reduce-scatters its gradients after; a LoRA layer is one
unit with its frozen base, so frozen and trained tensors share a unit.

Traps handled here: a parameter that requires grad but takes no part in the loss stops DDP at the
second step, whose reducer still waits for its gradient (it is found by one probe step and DDP is told); frozen tensors are never
reduced; gradient accumulation reduces once per optimizer step (`no_sync`, or FSDP's
`set_requires_gradient_sync(False)`) instead of once per forward pass.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.training.interface import Group, ParamGroup, Task

# The variables torchrun sets for every process it starts.
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DataParallel:
    """Where this process stands among the ranks of one run, and how the model is spread over them."""

    rank: int = 0
    """This process's index among all processes (0: the one that writes the record and weights)."""
    world: int = 1
    """How many processes train the run together."""
    local_rank: int = 0
    """This process's index on its machine (its GPU)."""
    sharded: bool = False
    """FSDP2: each rank holds a shard of every parameter (False: DDP, a full copy on each rank)."""

    def __post_init__(self):
        if not (isinstance(self.world, int) and self.world >= 1 and isinstance(self.rank, int)
                and 0 <= self.rank < self.world and isinstance(self.local_rank, int) and self.local_rank >= 0):
            raise LoralabError(f"invalid process layout: rank {self.rank!r} of {self.world!r} "
                               f"(local rank {self.local_rank!r})")

    @classmethod
    def from_environment(cls, sharded: bool = False, environ: Mapping[str, str] = os.environ) -> "DataParallel":
        """The layout torchrun gives this process (RANK, WORLD_SIZE, LOCAL_RANK); one process without it."""
        if "WORLD_SIZE" not in environ:
            if sharded:
                raise LoralabError("--fsdp shards the model across the processes torchrun starts; run under "
                                   "torchrun (e.g. torchrun --nproc_per_node 2 -m loralab train ... --fsdp)")
            return SINGLE
        values = {}
        for name in _ENVIRONMENT:
            text = environ.get(name, "0")
            if not text.isdigit():
                raise LoralabError(f"invalid {name}={text!r} in the environment: expected a whole number")
            values[name] = int(text)
        return cls(rank=values["RANK"], world=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"], sharded=sharded)

    @property
    def main(self) -> bool:
        """Whether this rank writes what the run leaves behind."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1 or self.sharded

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: its own GPU on a machine with several."""
        if device.type == "cuda" and self.distributed:
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    @contextlib.contextmanager
    def joined(self, device: torch.device) -> Iterator["DataParallel"]:
        """The process group of the run (NCCL on GPUs, gloo on CPUs) while the block runs."""
        import torch.distributed as dist

        if not self.distributed or dist.is_initialized():
            yield self
            return
        cuda = torch.device(device).type == "cuda"
        if cuda:  # before the group forms, so NCCL binds each rank to its own GPU
            self.device(torch.device(device))
        dist.init_process_group("nccl" if cuda else "gloo", rank=self.rank, world_size=self.world)
        try:
            yield self
        finally:
            dist.destroy_process_group()

    # -- training batches ------------------------------------------------------------------------

    def shard(self, chunk: Sequence[Any], collate: Callable[[list], dict]) -> tuple[dict, float]:
        """This rank's slice of a global batch, collated, and its share N n_r / n of the mean loss."""
        lo, hi = (round(r * len(chunk) / self.world) for r in (self.rank, self.rank + 1))
        mine = list(chunk[lo:hi])
        if not mine:  # fewer examples than ranks: join the reduction with a gradient of zero
            return collate(list(chunk[:1])), 0.0
        return collate(mine), self.world * len(mine) / len(chunk)

    def prepare(self, model: nn.Module, task: Task, packed: bool, groups: Sequence[ParamGroup] | None,
                probe: dict | None) -> "Prepared":
        """Wrap `model` for training. Under FSDP the parameters are replaced by sharded ones, so the
        optimizer must be built from the returned groups; `probe` is one local batch, used to find the
        parameters DDP would wait for."""
        if not self.distributed:
            return Prepared(model, task, packed, groups)
        info = {"world_size": self.world, "backend": _backend(), "sharding": "fsdp2" if self.sharded else "ddp",
                "reduced_bytes_per_step": reduced_bytes(model)}
        bound = _Bound(model)
        if self.sharded:
            groups = self._fully_shard(bound, groups)
            info["gathered_bytes_per_forward_backward"] = gathered_bytes(bound)
        else:
            unused = self._unused(model, task, packed, probe)
            info["unused_trainable_parameters"] = unused
            device_ids = [self.local_rank] if next(model.parameters()).device.type == "cuda" else None
            bound = nn.parallel.DistributedDataParallel(bound, device_ids=device_ids,
                                                        find_unused_parameters=bool(unused))
        return Prepared(model, task, packed, groups, bound, self.sharded, info)

    def _unused(self, model: nn.Module, task: Task, packed: bool, probe: dict | None) -> list[str]:
        """Names of trainable parameters that get no gradient from one forward and backward pass on any rank."""
        import torch.distributed as dist

        if probe is None:
            return []
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        on_gpu = [torch.cuda.current_device()] if next(iter(probe.values())).is_cuda else []
        with torch.random.fork_rng(devices=on_gpu):  # the probe must not move dropout's random stream
            task.loss(model, probe, packed).backward()
        used = torch.tensor([p.grad is not None for _, p in trainable], dtype=torch.int32, device=_collective_device())
        for _, p in trainable:
            p.grad = None
        dist.all_reduce(used, op=dist.ReduceOp.MAX)  # used on any rank counts as used
        return [n for (n, _), u in zip(trainable, used.tolist()) if not u]

    def _fully_shard(self, bound: "_Bound", groups: Sequence[ParamGroup] | None) -> tuple[Group, ...] | None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        model = bound.model
        if any(torch.nn.utils.parametrize.is_parametrized(m) for m in model.modules()):
            raise LoralabError("--fsdp cannot shard a random-subspace run (its weights are computed from theta); use DDP")
        _broadcast(model)  # every rank must shard the same initial weights (DDP broadcasts by itself)
        names = {id(p): n for n, p in model.named_parameters()}
        named = None if groups is None else [(group.lr, [names[id(p)] for p in group.params]) for group in groups]
        mesh = init_device_mesh(next(model.parameters()).device.type, (self.world,))
        # Units are the modules the packed forward calls directly (a LoRA layer with its frozen base, a
        # linear, an embedding): a unit's weights are gathered by its own forward. The rest (norms, the
        # head's bias) is the root unit, whole during a forward.
        bases = {id(base) for m in model.modules() if (base := _adapted(m)) is not None}
        for module in list(model.modules()):
            plain = isinstance(module, (nn.Linear, nn.Embedding)) and id(module) not in bases
            if plain or _adapted(module) is not None:
                fully_shard(module, mesh=mesh)
        fully_shard(bound, mesh=mesh)
        if named is None:
            return None
        params = dict(model.named_parameters())
        return tuple(Group(tuple(params[n] for n in names_), lr) for lr, names_ in named)

    def total(self, *values: float) -> list[float]:
        """Each value summed over the ranks."""
        if not self.distributed:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    # -- evaluation and saving -------------------------------------------------------------------

    def split(self, items: Sequence[Any]) -> list:
        """This rank's equal share of the evaluation examples, padded with repeats so every rank runs
        the same number of batches (FSDP gathers weights in every forward, on every rank)."""
        if not self.distributed:
            return list(items)
        per = math.ceil(len(items) / self.world)
        mine = list(items[self.rank * per:(self.rank + 1) * per])
        return mine + [items[0]] * (per - len(mine)) if items else mine

    def gather(self, outputs: list, total: int) -> list:
        """Every rank's outputs of `split`, in the examples' order."""
        if not self.distributed:
            return outputs
        import torch.distributed as dist

        everyone: list = [None] * self.world
        dist.all_gather_object(everyone, outputs)
        return [out for part in everyone for out in part][:total]

    def whole(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sharded tensors gathered whole (every rank must call this, in the same order)."""
        if not self.sharded:
            return tensors
        from torch.distributed.tensor import DTensor

        return {n: t.full_tensor() if isinstance(t, DTensor) else t for n, t in tensors.items()}


SINGLE = DataParallel()


def _adapted(module: nn.Module) -> nn.Module | None:
    """The layer `module` adapts, when it is an adapter: loralab's adapters wrap, not inherit, and hold
    the layer they adapt as `base` (LoRA's `LoraLinear`); None for any other module."""
    base = getattr(module, "base", None)
    return base if isinstance(base, nn.Module) else None


class Prepared:
    """A model made ready for one run's training loop: its loss, when to reduce, what was recorded."""

    def __init__(self, model: nn.Module, task: Task, packed: bool, groups: Sequence[ParamGroup] | None,
                 wrapped: nn.Module | None = None, sharded: bool = False, info: dict | None = None):
        self.model, self.task, self.packed, self.groups = model, task, packed, groups
        self.wrapped, self.sharded, self.info = wrapped, sharded, info

    def loss(self, batch: dict) -> torch.Tensor:
        if self.wrapped is None:
            return self.task.loss(self.model, batch, self.packed)
        return self.wrapped(self.task.loss, batch, self.packed)

    def sync(self, step_ends: bool):
        """Reduce gradients in this backward pass only when it ends an optimizer step."""
        if self.wrapped is None:
            return contextlib.nullcontext()
        if self.sharded:
            self.wrapped.set_requires_gradient_sync(step_ends)
            return contextlib.nullcontext()
        return contextlib.nullcontext() if step_ends else self.wrapped.no_sync()

    def finish(self) -> None:
        """After training: make the root unit's weights whole, so evaluation and saving can call the model."""
        if self.wrapped is not None and self.sharded:
            self.wrapped.set_requires_gradient_sync(True)
            self.wrapped.unshard()


class _Bound(nn.Module):
    """The model and a function that runs it (`task.loss`): DDP and FSDP act around a module's forward,
    and the packed path runs the model's parts, not its own forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn, batch, packed):
        return fn(self.model, batch, packed)


def _backend() -> str:
    import torch.distributed as dist

    return dist.get_backend()


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if _backend() == "nccl" else torch.device("cpu")


def _broadcast(model: nn.Module) -> None:
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)


def reduced_bytes(model: nn.Module) -> int:
    """Bytes of gradient all-reduced (DDP) or reduce-scattered (FSDP) per optimizer step: what trains."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def gathered_bytes(bound: nn.Module) -> int:
    """Bytes of weights FSDP all-gathers per forward and backward pass: every sharded unit in the
    forward, and again in the backward; the root unit is gathered once and stays whole in between."""
    size = lambda params: sum(p.numel() * p.element_size() for p in params)  # noqa: E731
    return 2 * size(bound.parameters()) - size(_root_params(bound))


def _root_params(bound: nn.Module) -> list[torch.nn.Parameter]:
    """Parameters of the root unit: those no sharded child module owns."""
    from torch.distributed.fsdp import FSDPModule

    owned = {id(p) for m in bound.model.modules() if isinstance(m, FSDPModule) for p in m.parameters()}
    return [p for p in bound.parameters() if id(p) not in owned]
