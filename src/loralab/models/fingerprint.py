"""What a run records of its base model: a fingerprint of the pretrained weights, and parameter counts.

The fingerprint hashes every pretrained tensor (name, shape and bytes) but the task head, which is
new and initialised per run; a run folder's weights are only ever applied to a base with the same
fingerprint.
"""

from __future__ import annotations

import hashlib

import torch

from loralab.models.architectures import architecture, is_head
from loralab.names import has_prefix


def fingerprint(model: torch.nn.Module) -> str:
    """A hash of the pretrained weights (the task head, initialised per run, is left out)."""
    arch = architecture(model)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if is_head(name, arch) and not any(has_prefix(name, u) for u in arch.untrained):
            continue  # a module found untrained is the checkpoint's own weights: it stays in
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each tensor counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total
