"""GaLore: gradient low-rank projection (Zhao et al. 2024, "GaLore: Memory-Efficient LLM Training by
Gradient Low-Rank Projection").

Every weight trains, but each weight matrix's gradient G (m, n) is projected onto r directions
before Adam sees it, so Adam's two moments are r-sized, and the update is projected back:

    R = P^T G  (m < n: P = U[:, :r], (m, r))   or   R = G P^T  (m >= n: P = V^T[:r], (r, n))
    W <- W - lr * scale * project_back(Adam(R))

P comes from the SVD of the current gradient and is refreshed every `update_proj_gap` steps
(Sec. 4, Alg. 2). Optimizer state for an (m, n) matrix shrinks from 2 m n to 2 r max(m, n) + r min(m, n).
loralab uses the `galore-torch` package's `GaLoreAdamW` (pip install loralab[galore]); this module
only decides which parameters are projected (the weights of the linear layers `targets` picks, when
they train) and with what settings, and counts the state it saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.settings.strategy import GaloreConfig
from loralab.models import architecture
from loralab.strategies.selection import find_modules


def projected(model: nn.Module, config: GaloreConfig) -> list[nn.Parameter]:
    """The weight matrices GaLore projects: those of the layers `config.targets` picks that train."""
    layers = find_modules(model, architecture(model), config.targets)
    weights = [model.get_submodule(name).weight for name in layers]
    return [w for w in weights if w.requires_grad and w.dim() == 2]


def galore_param_groups(model: nn.Module, config: GaloreConfig, params: Iterable[nn.Parameter] | None = None,
                        weight_decay: float = 0.0) -> list[dict]:
    """Optimizer groups for `GaLoreAdamW`: the projected matrices with GaLore's settings, the rest plain.

    `params`: what trains (a strategy's parameter groups, flattened; None: every parameter that requires grad).
    """
    params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    chosen = {id(p) for p in projected(model, config)}
    matrices = [p for p in params if id(p) in chosen]
    rest = [p for p in params if id(p) not in chosen]
    galore = {"rank": config.rank, "update_proj_gap": config.update_proj_gap, "scale": config.scale, "proj_type": "std"}
    groups = [{"params": rest, "weight_decay": weight_decay}, {"params": matrices, "weight_decay": weight_decay, **galore}]
    return [g for g in groups if g["params"]]


class GaloreChoice(NamedTuple):
    """GaLore's optimizer as a parameter group asks the training loop for it (`OptimizerChoice`)."""

    make: Callable[[list[dict], float], torch.optim.Optimizer]
    options: dict


def galore_adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """galore-torch's `GaLoreAdamW` over torch-style groups (those with a `rank` are projected)."""
    try:
        from galore_torch import GaLoreAdamW
    except ImportError:
        raise LoralabError("GaLore needs the 'galore-torch' package: pip install loralab[galore]") from None
    return GaLoreAdamW(groups, lr=lr, no_deprecation_warning=True)


def galore_choice(config: GaloreConfig) -> GaloreChoice:
    """What a group of projected matrices asks the loop for: `GaLoreAdamW`, with `config`'s settings."""
    return GaloreChoice(galore_adamw, {"rank": config.rank, "update_proj_gap": config.update_proj_gap,
                                       "scale": config.scale, "proj_type": "std"})


def galore_optimizer(model: nn.Module, config: GaloreConfig, lr: float, weight_decay: float = 0.0,
                     params: Iterable[nn.Parameter] | None = None) -> torch.optim.Optimizer:
    """galore-torch's `GaLoreAdamW` over `galore_param_groups`."""
    return galore_adamw(galore_param_groups(model, config, params, weight_decay), lr)


@dataclass(frozen=True)
class StateBytes:
    """Optimizer state of one model under GaLore and under AdamW (both moments; float32 state as the params)."""

    galore: int
    adamw: int

    @property
    def ratio(self) -> float:
        return self.galore / self.adamw


def optimizer_state_bytes(model: nn.Module, config: GaloreConfig,
                          params: Iterable[nn.Parameter] | None = None) -> StateBytes:
    """The bytes of Adam's moments (and GaLore's projections) for what trains in `model`.

    A projected (m, n) matrix keeps two r' max(m, n) moments and an r' min(m, n) projection, with
    r' = min(r, m, n) (the SVD has no more directions); everything else keeps two full moments.
    """
    params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    chosen = {id(p) for p in projected(model, config)}
    galore = adamw = 0
    for p in params:
        full = 2 * p.numel() * p.element_size()
        adamw += full
        if id(p) in chosen:
            m, n = p.shape
            r = min(config.rank, m, n)
            galore += (2 * r * max(m, n) + r * min(m, n)) * p.element_size()
        else:
            galore += full
    return StateBytes(galore, adamw)
