"""Merging: add a run's trained weights to the base model and write a plain Hugging Face folder.

For LoRA the merge is W = W0 + (alpha / r) B A (Hu et al. 2021, Sec. 4.1, "no additional inference
latency"): once every `LoraLinear` is merged and replaced by the `nn.Linear` it wraps, the model
has exactly the base architecture and parameter names, so `transformers` loads the folder with no
loralab installed and runs it at the base model's speed. The selection strategies (full,
attention, qv) train weights in place, so there is nothing to merge: their model is saved as is.
The random subspace is merged by evaluating W0 + P theta once and keeping the result. A run on a
quantized base (QLoRA) is first dequantized: each 4- or 8-bit layer becomes the float layer it
computes with, dequant(Q(W0)), so the folder holds plain float32 weights (see README, "QLoRA"). A run on a
half base (`--base-dtype bfloat16`) is merged in float32 too: W0 as the run rounded it, plus the update
added in float32 (rounding the sum to bfloat16 would lose most of a small update). Each merge
lives with its strategy, in the table `loralab.strategies.STRATEGIES`; this module turns a run
folder into a model folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from torch import nn

from loralab.version import __version__
from loralab.runs.artifacts import new_mode, temporary_prefix, write_json
from loralab.errors import LoralabError, disk_full
from loralab.models.half import float_base
from loralab.models.quantize import dequantize_model
from loralab.strategies import STRATEGIES, Strategy

PROVENANCE = "loralab_merge.json"


def merge_into_base(model: nn.Module, strategy: Strategy) -> nn.Module:
    """Turn `model`, adapted by `strategy`, into the plain base architecture in place; returns it."""
    dequantize_model(model)
    float_base(model)  # a half base back to float32 first: the update is added, and written, in float32
    STRATEGIES[Strategy.parse(strategy)].merge(model)
    leftover = [name for name, m in model.named_modules() if type(m).__module__.startswith("loralab.")]
    if leftover:
        raise LoralabError(f"cannot merge: loralab modules remain after merging ({', '.join(leftover[:3])})")
    return model


def merge_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write `out_dir`: safetensors weights with the run's deltas merged in, config and tokenizer.

    The folder is built beside `out_dir` and renamed into place, so a crash never leaves half of it.
    """
    from loralab.runs import load_run

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise LoralabError(f"{out_dir}: already exists and is not an empty folder; choose a new --out")
    loaded = load_run(run_dir, device="cpu")
    model = merge_into_base(loaded.model, loaded.config.strategy.strategy)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=temporary_prefix(out_dir.name), suffix=".tmp"))
    try:
        os.chmod(tmp, new_mode(out_dir, folder=True))  # mkdtemp's 0700, as a folder made with mkdir would be
        model.save_pretrained(tmp)  # safetensors: transformers 5 writes nothing else
        loaded.tokenizer.save_pretrained(tmp)
        write_json(tmp / PROVENANCE, {
            "merged_from": str(Path(run_dir).resolve()),
            "strategy": loaded.config.strategy.strategy.value,
            **({"dequantized": loaded.record.get("quantization")} if loaded.config.quantize.enabled else {}),
            "base_model": loaded.record.get("base_model"),
            "loralab_version": __version__,
        })
        for path in tmp.rglob("*"):  # safetensors' writer makes its files 0600, whatever the umask
            os.chmod(path, new_mode(out_dir / path.relative_to(tmp), folder=path.is_dir()))
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        tmp.rename(out_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if disk_full(e):
            raise LoralabError(f"{out_dir}: cannot write ({disk_full(e)}); nothing was left behind") from None
        raise
    return out_dir
