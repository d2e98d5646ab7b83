"""Loading a pretrained model and its tokenizer: from a local folder, a packaged model, or the hub.

`resolve_model` turns what the user named into what transformers loads; `load_model` builds the
task-model class the caller asks for (a task names its own, `Task.model_class`), weights from
safetensors only, with the new head initialised from a seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from loralab.errors import LoralabError
from loralab.models.architectures import architecture, is_head
from loralab.models.packaged import packaged_folder
from loralab.settings.model import DEFAULT_MODEL

MULTIPLE_CHOICE_CLASS = "AutoModelForMultipleChoice"  # what `load_model` builds unless told otherwise


def resolve_model(name: str | None) -> str:
    """A local folder, a packaged model alias, or a hub name (used as is)."""
    name = name or DEFAULT_MODEL
    folder = packaged_folder(name)
    if folder is not None:
        return folder
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise LoralabError(f"model {name}: is a file; expected a model folder (config.json, model.safetensors)")
        return str(path)
    # A hub name is `name` or `owner/name`; anything else that is not on disk was meant as a folder.
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        raise LoralabError(f"model folder {name}: no such folder")
    return name


def recorded_model(name: str | None) -> str | None:
    """How a run records its model: a local folder by its absolute path (so the record loads from any
    folder), a packaged alias or a hub name as given."""
    if name is None or packaged_folder(name) is not None:
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def model_type(name: str | None, *, offline: bool = True, trust_remote_code: bool = False) -> str:
    """The `model_type` of a model's configuration, read without loading its weights."""
    from transformers import AutoConfig

    path = resolve_model(name)
    try:
        return AutoConfig.from_pretrained(path, local_files_only=offline, trust_remote_code=trust_remote_code).model_type
    except (OSError, ValueError) as e:
        raise LoralabError(f"cannot read the configuration of model {name or DEFAULT_MODEL!r}: {str(e).splitlines()[0]}") from None


def position_limit(model: torch.nn.Module) -> int | None:
    """The most tokens a sequence may hold: the rows of a learned table of absolute positions (BERT, RoBERTa,
    MPNet, GPT-2), less those before the first position (RoBERTa and MPNet count from padding_idx + 1);
    None for relative or rotary positions, which have no table to run off the end of."""
    for name, module in model.named_modules():
        if name.endswith(("position_embeddings", "wpe")) and isinstance(module, torch.nn.Embedding):
            return module.num_embeddings - (module.padding_idx + 1 if module.padding_idx is not None else 0)
    return None


def load_model(name: str | None = None, *, offline: bool = True, trust_remote_code: bool = False, seed: int = 0,
               model_class: str | type = MULTIPLE_CHOICE_CLASS,
               model_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """A pretrained model as `model_class` (a transformers Auto class, or its name: a task's
    `model_class`), weights from safetensors only.

    The head is new, so it is initialised from `seed`: the same seed gives the same model.
    `model_kwargs` go to `from_pretrained` (a task's `model_kwargs(space)`: the labels that size a
    classification head).
    """
    import transformers
    from transformers.utils import logging as hf_logging

    auto_class = getattr(transformers, model_class) if isinstance(model_class, str) else model_class
    path = resolve_model(name)
    hf_logging.set_verbosity_error()  # the "newly initialized head" notice is expected here
    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    try:
        # A folder saved with another head (a multiple-choice model given to a classification run,
        # say) has a head of another shape: the head is new anyway, so it is initialised afresh.
        model, info = auto_class.from_pretrained(path, local_files_only=offline, use_safetensors=True,
                                                 trust_remote_code=trust_remote_code, ignore_mismatched_sizes=True,
                                                 output_loading_info=True, **(model_kwargs or {}))
    except (OSError, ValueError) as e:
        hint = " (offline: pass a local folder, or allow downloads with --online)" if offline and not Path(path).exists() else ""
        raise LoralabError(f"cannot load model {name or DEFAULT_MODEL!r} from {path}{hint}: {str(e).splitlines()[0]}") from None
    arch = architecture(model)  # fail early on architectures we cannot adapt
    mismatched = sorted(str(key[0] if isinstance(key, tuple) else key) for key in info.get("mismatched_keys", ()))
    outside = [key for key in mismatched if not is_head(key, arch)]
    if outside:  # only the head may differ; a base weight of another shape means another model
        raise LoralabError(f"cannot load model {name or DEFAULT_MODEL!r} from {path}: weight {outside[0]!r} has "
                           "another shape than its configuration says")
    return model


def load_tokenizer(name: str | None = None, *, offline: bool = True, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=offline, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise LoralabError(f"cannot load the tokenizer of {name or DEFAULT_MODEL!r}: {str(e).splitlines()[0]}") from None


def pad_token_id(tokenizer) -> int:
    """The id that pads batches: the tokenizer's pad token, else (decoders often have none) its end of sequence."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


def offline_environment(offline: bool) -> None:
    """Keep Hugging Face libraries from reaching the network unless the user asks."""
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
