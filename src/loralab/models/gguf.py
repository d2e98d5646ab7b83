"""A GGUF model file turned into a plain safetensors folder transformers loads fast.

transformers dequantizes GGUF on every load (tens of seconds), and a model loaded from GGUF cannot
be saved as it is; so the file's model is dequantized to floats once, rebuilt from its
configuration without the quantization entry, and saved with its tokenizer into loralab's cache
(`loralab.models.cache`), keyed by a hash of the file.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

from loralab.errors import LoralabError
from loralab.models.cache import cache_dir, file_hash


def gguf_folder(gguf: Path, name: str) -> str:
    """A plain safetensors folder (config, weights, tokenizer) holding the GGUF file's model dequantized
    to floats, built once per file content."""
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
