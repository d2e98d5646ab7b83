"""The training loop's state at the end of a step, as tensors and JSON, and putting it back.

A snapshot is what a checkpoint holds: the trainable weights only (a LoRA run's are kilobytes),
AdamW's moments, the schedule, every random state a step draws from (torch's, which loralab's
dropout and torch's own dropout use, CUDA's, Python's, NumPy's, and the loop's data-order generator
as it stood when the epoch began) and the data position (the epoch's next batch). Tensors and plain
values are kept apart, so it is written as safetensors + JSON and nothing is ever unpickled;
restored into a freshly built model at the same step, training goes on bit for bit as if it had
never stopped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from loralab.errors import LoralabError

WEIGHT, MOMENT, RNG = "weights/", "optimizer/", "rng/"


@dataclass(frozen=True)
class Snapshot:
    """The loop's state: `tensors` (safetensors) and `meta` (JSON)."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["position"]["steps"])


def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def capture(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, epoch_state: torch.Tensor,
            position: dict[str, Any]) -> Snapshot:
    """The state after a step; `epoch_state` is the data-order generator's state as the current epoch
    began, `position` the steps, losses, tokens and the epoch's next batch."""
    tensors = {WEIGHT + name: p.detach().cpu().clone() for name, p in trainable(model).items()}
    state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{MOMENT}{index}/{key}"] = value.detach().cpu().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors[RNG + "torch"] = torch.get_rng_state()
    tensors[RNG + "epoch"] = epoch_state.clone()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{RNG}cuda/{i}"] = cuda_state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors[RNG + "numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, python_state, gauss_next = random.getstate()
    meta = {
        "position": position,
        "optimizer": {"param_groups": state["param_groups"], "scalars": scalars},
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
        "rng": {"numpy": [kind, pos, has_gauss, gauss], "python": [version, list(python_state), gauss_next]},
    }
    return Snapshot(tensors, meta)


def restore(snapshot: Snapshot, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Put a snapshot's weights, optimizer, schedule and global random states back (the data-order
    generator and the position are the loop's to use)."""
    tensors, meta = snapshot.tensors, snapshot.meta
    params = trainable(model)
    saved = {k[len(WEIGHT):] for k in tensors if k.startswith(WEIGHT)}
    if saved != set(params):
        raise LoralabError(f"the checkpoint's trainable weights ({len(saved)}) are not this run's ({len(params)})")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[WEIGHT + name])
    state: dict[Any, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        if key.startswith(MOMENT):
            index, name = key[len(MOMENT):].split("/", 1)
            state.setdefault(int(index), {})[name] = tensor
    for index, values in meta["optimizer"]["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["optimizer"]["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(dict(meta["scheduler"], lr_lambdas=[None] * len(optimizer.param_groups)))
    torch.set_rng_state(tensors[RNG + "torch"])
    cuda = sorted(k for k in tensors if k.startswith(RNG + "cuda/"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, gauss = meta["rng"]["numpy"]
    np.random.set_state((kind, tensors[RNG + "numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, python_state, gauss_next = meta["rng"]["python"]
    random.setstate((version, tuple(python_state), gauss_next))
