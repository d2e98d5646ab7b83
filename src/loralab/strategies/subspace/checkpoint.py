"""Subspace checkpoints: theta, the SAID scales and the direct parameters in safetensors; the rest is metadata.

P is not saved: it is rebuilt from the recorded seed on a fresh copy of the base model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from loralab.errors import LoralabError
from loralab.strategies.subspace.attach import Subspace, SubspaceConfig, _attach, _matches, subspace_of
from loralab.strategies.subspace.projections import Projection

WEIGHTS_FILE = "subspace.safetensors"
METADATA_FILE = "subspace.json"
FORMAT = "loralab-subspace/1"


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
