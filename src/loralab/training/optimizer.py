"""AdamW (Loshchilov & Hutter 2019) over a strategy's parameter groups, under a linear warm-up then decay.

Weight decay applies to matrices only, not to biases, norms or a subspace's coordinates. Groups
with a learning rate of their own (a subspace's theta, LoRA+'s B) get optimizer groups of their
own, one per rate; the rest are pooled, in the model's order, into one group of matrices and one of
vectors. A group that asks for another optimizer (`OptimizerChoice`: GaLore's projected matrices)
gets it, with its options; every other group then takes plain AdamW steps in that same optimizer.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from loralab.errors import LoralabError
from loralab.training.interface import Group, OptimizerChoice, ParamGroup


def adamw(model: torch.nn.Module, lr: float, weight_decay: float,
          groups: Sequence[ParamGroup] | None = None, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW over `groups` (None: every parameter that requires grad, at `lr`).

    `fused`: torch's fused kernel on every device. On a CPU it updates MiniLM's 23M fp32 master weights
    about 4x faster than the per-tensor loop, but rounds differently (within an ulp), so only bf16 runs
    ask for it and fp32 runs stay bit-identical to their earlier records.
    """
    if groups is None:
        groups = (Group(tuple(p for p in model.parameters() if p.requires_grad)),)
    if not any(group.params for group in groups):
        raise LoralabError("nothing to train: the strategy left no parameter trainable")
    own: dict[tuple, tuple[float | None, OptimizerChoice | None, list]] = {}  # by (lr, optimizer), in order
    rest = []
    for group in groups:
        choice = getattr(group, "optimizer", None)
        if group.lr is None and choice is None:
            rest.extend(group.params)
        else:
            own.setdefault((group.lr, id(choice)), (group.lr, choice, []))[2].extend(group.params)
    decay = [p for p in rest if p.dim() >= 2]
    no_decay = [p for p in rest if p.dim() < 2]
    optimizer_groups = [{"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}]
    for group_lr, choice, params in own.values():
        extra = {**({"lr": group_lr} if group_lr is not None else {}), **(choice.options if choice else {})}
        optimizer_groups += [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, **extra},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, **extra}]
    optimizer_groups = [g for g in optimizer_groups if g["params"]]
    makers = {choice.make for _, choice, _ in own.values() if choice is not None}
    if len(makers) > 1:
        raise LoralabError("the strategy's parameter groups ask for different optimizers; one run has one")
    if makers:
        return makers.pop()(optimizer_groups, lr)
    # On a GPU, AdamW's fused kernel updates every tensor in one launch; elsewhere torch's default (a CPU
    # gets the per-tensor loop) unless the caller asks for the fused kernel.
    fused = fused or all(p.is_cuda for g in optimizer_groups for p in g["params"]) or None
    return torch.optim.AdamW(optimizer_groups, lr=lr, fused=fused)


def linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The learning rate's factor at each step: up from 1/warmup to 1 over `warmup_steps`, then down to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor
