"""Merging: fold a run's trained weights into the base model and write a plain Hugging Face folder.

For LoRA the fold is W = W0 + (alpha / r) B A (Hu et al. 2021, Sec. 4.1, "no additional inference
latency"): once every `LoraLinear` is merged and replaced by the `nn.Linear` it wraps, the model
has exactly the base architecture and parameter names, so `transformers` loads the folder with no
loralab installed and runs it at the base model's speed. The selection strategies (full,
attention, qv) train weights in place, so there is nothing to fold: their model is saved as is.
Strategies that reparametrize weights (the random subspace) are folded by evaluating the
parametrization once and keeping the result.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from torch import nn
from torch.nn.utils import parametrize

from loralab import __version__
from loralab.artifacts import write_json
from loralab.errors import LoralabError
from loralab.strategies import Strategy
from loralab.strategies.lora import LoraLinear

PROVENANCE = "loralab_merge.json"


def _in_place(model: nn.Module) -> None:
    """Selection strategies: the trained tensors already sit where the base model keeps them."""


def _fold_lora(model: nn.Module) -> None:
    # Collect first: replacing children while iterating named_modules() would skip some.
    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLinear)]
    for name, layer in wrapped:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base)  # `X.base.weight` becomes `X.weight` again, as in the base model


def fold_parametrizations(model: nn.Module) -> None:
    """Strategies built on `torch.nn.utils.parametrize` (the random subspace, W = W0 + P theta).

    Each parametrized tensor is replaced by its current value, as a frozen parameter under its
    original name. Weights tied before parametrization come out as separate copies.
    """
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        for name in list(module.parametrizations):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
            value = getattr(module, name).detach()
            delattr(module, name)  # W0 may have been a buffer: make it a parameter again, as in the base model
            module.register_parameter(name, nn.Parameter(value, requires_grad=False))


# How each strategy turns an adapted model back into the plain base architecture.
MATERIALISE: dict[Strategy, Callable[[nn.Module], None]] = {
    Strategy.FULL: _in_place,
    Strategy.ATTENTION: _in_place,
    Strategy.QV: _in_place,
    Strategy.LORA: _fold_lora,
    Strategy.SUBSPACE: fold_parametrizations,
}


def materialise(model: nn.Module, strategy: Strategy) -> nn.Module:
    """Turn `model`, adapted by `strategy`, into the plain base architecture in place; returns it."""
    strategy = Strategy.parse(strategy)
    if strategy not in MATERIALISE:
        raise LoralabError(f"merging a {strategy.value!r} run into a plain model is not supported yet")
    MATERIALISE[strategy](model)
    leftover = [name for name, m in model.named_modules() if type(m).__module__.startswith("loralab.")]
    if leftover:
        raise LoralabError(f"cannot merge: loralab modules remain after folding ({', '.join(leftover[:3])})")
    return model


def merge_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write `out_dir`: safetensors weights with the run's deltas folded in, config and tokenizer.

    The folder is built beside `out_dir` and renamed into place, so a crash never leaves half of it.
    """
    from loralab.runs import load_run

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise LoralabError(f"{out_dir}: already exists and is not an empty folder; choose a new --out")
    loaded = load_run(run_dir, device="cpu")
    model = materialise(loaded.model, loaded.config.strategy.strategy)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(tmp)  # safetensors: transformers 5 writes nothing else
        loaded.tokenizer.save_pretrained(tmp)
        write_json(tmp / PROVENANCE, {
            "merged_from": str(Path(run_dir).resolve()),
            "strategy": loaded.config.strategy.strategy.value,
            "base_model": loaded.record.get("base_model"),
            "loralab_version": __version__,
        })
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
