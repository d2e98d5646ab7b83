"""Choosing what trains: every strategy ends in a set of trainable parameters.

`full`, `attention` and `qv` are one mechanism with different selections: freeze everything, then
unfreeze the modules whose names match the chosen projection roles (from the architecture table)
and, unless asked not to, the task head.
"""

from __future__ import annotations

from torch import nn

from loralab.errors import LoralabError
from loralab.models import ROLES, Architecture, is_head, is_linear, is_output
from loralab.names import has_suffix


def find_modules(model: nn.Module, arch: Architecture, targets: tuple[str, ...]) -> list[str]:
    """Module names picked by `targets`: roles, 'all-linear' (every linear layer outside the head and a
    decoder's output layer) or suffixes (a decoder's MLP: gate_proj, up_proj, down_proj)."""
    names = []
    for name, module in model.named_modules():
        if not name or is_head(name, arch) or is_output(name, arch):
            continue
        for target in targets:
            if target == "all-linear":
                hit = is_linear(module)
            elif target in ROLES:
                hit = has_suffix(name, arch.role(target))
            else:
                hit = has_suffix(name, target)
            if hit:
                names.append(name)
                break
    if not names:
        raise LoralabError(f"targets {', '.join(targets)} match no module of this {type(model).__name__}")
    return names


def head_modules(model: nn.Module, arch: Architecture) -> list[str]:
    return [name for name, _ in model.named_modules() if name in arch.head]


def freeze_all_but(model: nn.Module, module_names: list[str] | None) -> None:
    """Freeze every parameter, then unfreeze those inside `module_names` (None: unfreeze all)."""
    if module_names is None:
        model.requires_grad_(True)
        return
    model.requires_grad_(False)
    for name in module_names:
        model.get_submodule(name).requires_grad_(True)
