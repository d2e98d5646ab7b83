"""LoRA adapters in peft's format: export a loralab run, import an adapter that peft saved.

A peft LoRA adapter is a folder with `adapter_config.json` (r, lora_alpha, target_modules, ...) and
`adapter_model.safetensors`. Both libraries compute h = W0 x + scaling * B A x with A: (r, in) and
B: (out, r), so the tensors carry over unchanged (also on GPT-2's Conv1D, whose W0 is stored
transposed: peft's `fan_in_fan_out` says so, and both libraries follow the layer's type); only the
names differ:

    loralab                                  peft
    <module>.lora_A                          base_model.model.<module>.lora_A.weight
    <module>.lora_B                          base_model.model.<module>.lora_B.weight
    classifier.weight (task head)            base_model.model.classifier.weight   (modules_to_save)

peft has no multiple-choice task type, so the head travels as `modules_to_save` with
`task_type=None`. A run on a quantized base (QLoRA) exports the same adapter; peft applies it to
its own quantized base, loaded with the matching `BitsAndBytesConfig` (`bnb_config`), which
keeps the head in float (`llm_int8_skip_modules`) as loralab does. peft records no fingerprint of the base weights; loralab puts one in the
safetensors header, where peft ignores it, and checks it when it finds one.
"""

from __future__ import annotations

import dataclasses
import json

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from loralab.version import __version__
from loralab.runs.artifacts import load_state_into, load_weights, read_json, read_metadata, save_weights, write_json
from loralab.errors import LoralabError
from loralab.models import architecture, fingerprint, is_head, resolve_model
from loralab.models.packaged import ALIASES as PACKAGED_ALIASES
from loralab.models.quantize import QuantizeConfig
from loralab.settings.model import COMPUTE_DTYPE_NAMES
from loralab.names import has_prefix, has_suffix
from loralab.strategies import Strategy, StrategyConfig, StrategyReport, apply_strategy
from loralab.runs.peft_formats import adapter_config, adapter_state, lora_config
from loralab.strategies.lora import LoraConfig

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
FINGERPRINT_KEY = "loralab_base_fingerprint"
TASK_KEY, SPACE_KEY = "loralab_task", "loralab_label_space"  # which head: safetensors metadata peft ignores
SCORING_KEY = "loralab_scoring"  # a decoder's multiple choice: letter or likelihood
QUANTIZE_KEY = "loralab_quantize"  # the quantized base the adapter was trained on
BASE_DTYPE_KEY = "loralab_base_dtype"  # a half base (--base-dtype) the adapter was trained on
HUB_KEY = "loralab_base_model_hub_name"  # the base's hub name, beside the local folder the config names

# The packaged model's alias is loralab's; peft users know it by its hub name.
_HUB_NAMES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "mpnet": "sentence-transformers/all-mpnet-base-v2"}

# peft's initialisations that leave a residual in the base, which loralab computes alike (peft refactors on loading).
_INITS = ("pissa", "olora")

# peft features loralab's LoraLinear does not compute: (config field, test for "in use", why refused).
_UNSUPPORTED: tuple[tuple[str, Any, str], ...] = (
    ("init_lora_weights", lambda v: v not in _INITS and v not in (None, True, False, "gaussian", "orthogonal"),
     "an initialisation that changes the base weight in a way loralab does not"),
    ("bias", lambda v: v not in (None, "none"), "trained biases (bias != 'none')"),
    ("lora_bias", lambda v: bool(v), "a bias on lora_B"),
    ("rank_pattern", lambda v: bool(v), "per-module ranks (rank_pattern)"),
    ("alpha_pattern", lambda v: bool(v), "per-module alphas (alpha_pattern)"),
    ("target_parameters", lambda v: bool(v), "LoRA on bare parameters (target_parameters)"),
    ("trainable_token_indices", lambda v: bool(v), "trainable tokens"),
    ("layer_replication", lambda v: bool(v), "layer replication"),
    ("use_qalora", lambda v: bool(v), "QA-LoRA"),
    ("alora_invocation_tokens", lambda v: bool(v), "activated LoRA"),
)


@dataclass(frozen=True)
class PeftAdapter:
    """A peft LoRA adapter read from disk and translated into loralab's names and settings."""

    path: Path
    lora: LoraConfig
    """LoRA settings; `targets` are the exact names of the modules the adapter has weights for."""
    tensors: dict[str, torch.Tensor]
    """Adapter and head tensors under loralab's state-dict names."""
    head: tuple[str, ...]
    """The adapter's `modules_to_save` (the task head, when it carries one)."""
    base_model: str | None
    """`base_model_name_or_path` as peft recorded it."""
    fingerprint: str | None
    """The base weights' fingerprint, when loralab wrote the adapter."""
    task: str = "multiple-choice"
    """The task whose head the adapter carries (loralab's metadata; multiple choice otherwise)."""
    space: dict = dataclasses.field(default_factory=dict)
    """The task's label space (a classification adapter's labels), from loralab's metadata."""
    scoring: str | None = None
    """How a decoder's adapter scores multiple choice (letter, likelihood), from loralab's metadata."""
    quantize: QuantizeConfig = dataclasses.field(default_factory=QuantizeConfig)
    """The quantized base it was trained on (loralab's metadata; none otherwise)."""
    base_dtype: str = "float32"
    """The dtype its frozen base was stored in (loralab's metadata; float32 otherwise)."""

    @property
    def strategy(self) -> StrategyConfig:
        return StrategyConfig(strategy=Strategy.LORA, lora=self.lora, train_head=True)


# ---------------------------------------------------------------------------------------------
# Export


def peft_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """An adapted model's adapters (`peft_formats.adapter_state`) and task head under peft's key names."""
    arch = architecture(model)
    tensors = {PREFIX + name: tensor for name, tensor in adapter_state(model).items()}
    for name, param in model.named_parameters():
        if is_head(name.rpartition(".")[0], arch):
            tensors[PREFIX + name] = param
    return tensors


def peft_config(model: nn.Module, lora: LoraConfig, base_model: str) -> dict[str, Any]:
    """The `adapter_config.json` that makes peft rebuild exactly this model's LoRA adapters."""
    return lora_config(model, lora, base_model)


def export_peft(loaded, out_dir: str | Path, run_dir: str | Path = "") -> Path:
    """Write a loaded LoRA, DoRA, VeRA or IA3 run (`loralab.runs.load_run`) as a peft adapter folder that
    `PeftModel.from_pretrained` loads."""
    strategy = loaded.config.strategy
    base, hub = base_names(loaded.config.model)  # where it loads offline, and its hub name beside it
    config = adapter_config(loaded.model, strategy, base, str(run_dir or "this run"))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LoralabError(f"{out_dir}: exists and is not a folder")
    metadata = {"format": "pt", "loralab_version": __version__, **({HUB_KEY: hub} if hub else {})}
    recorded = loaded.record.get("base_model", {}).get("fingerprint")
    if recorded:
        metadata[FINGERPRINT_KEY] = recorded
    metadata[TASK_KEY] = loaded.task.name
    metadata[SPACE_KEY] = json.dumps(loaded.space)
    if getattr(loaded.task, "scoring", None):
        metadata[SCORING_KEY] = loaded.task.scoring
    if loaded.config.quantize.enabled:
        metadata[QUANTIZE_KEY] = json.dumps(dataclasses.asdict(loaded.config.quantize))
    if loaded.config.base_dtype != "float32":  # peft users load the base with torch_dtype set to it
        metadata[BASE_DTYPE_KEY] = loaded.config.base_dtype
    # Weights first: a folder whose config exists always has its weights beside it.
    save_weights(out_dir / WEIGHTS, peft_state(loaded.model), metadata)
    write_json(out_dir / CONFIG, config)
    if hub:  # the model card's front matter, where the hub looks for an adapter's base
        (out_dir / "README.md").write_text(f"---\nbase_model: {hub}\nlibrary_name: peft\n---\n\nA LoRA adapter "
                                           f"exported by loralab {__version__} (`loralab export-peft`).\n")
    return out_dir


def base_names(model: str) -> tuple[str, str | None]:
    """(what `base_model_name_or_path` holds, the hub name): the folder loralab loaded the base from
    when it was local or packaged, so the adapter loads offline where it was made; the hub name, where
    there is one, goes beside it."""
    local = resolve_model(model)
    folder = Path(local).expanduser()
    hub = _HUB_NAMES.get(PACKAGED_ALIASES.get(model.lower(), model.lower())) or (None if folder.is_dir() else model)
    return (str(folder.absolute()) if folder.is_dir() else local), hub


# ---------------------------------------------------------------------------------------------
# Import


def _loralab_name(key: str, head: tuple[str, ...], path: Path, dora: bool) -> str:
    name = key.removeprefix(PREFIX).removesuffix(".lora_magnitude_vector.weight")  # older peft: a module
    module, _, leaf = name.rpartition(".")
    if leaf == "weight" and module.rpartition(".")[2] in ("lora_A", "lora_B"):
        layer, _, factor = module.rpartition(".")
        return f"{layer}.lora.{factor}" if dora else module  # <module>.lora_A.weight -> <module>[.lora].lora_A
    if dora and (leaf == "lora_magnitude_vector" or name != key.removeprefix(PREFIX)):
        return f"{module if leaf == 'lora_magnitude_vector' else name}.magnitude"
    if any(part.startswith(("lora_", "magnitude")) for part in name.split(".")):
        raise LoralabError(f"{path}: tensor {key!r} belongs to a LoRA variant loralab does not compute")
    # Older peft versions kept the wrapper's `modules_to_save.` segment in the saved key.
    name = name.replace(".modules_to_save.", ".")
    if not any(has_prefix(name, h) for h in head):
        raise LoralabError(f"{path}: tensor {key!r} is neither a LoRA weight nor part of modules_to_save {list(head)}")
    return name


def read_peft_adapter(adapter_dir: str | Path) -> PeftAdapter:
    """Read and validate a peft LoRA adapter folder; nothing is unpickled."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise LoralabError(f"{adapter_dir}: no such adapter folder")
    config_path, weights_path = adapter_dir / CONFIG, adapter_dir / WEIGHTS
    config = read_json(config_path)
    if not weights_path.is_file():
        pickled = [p.name for p in adapter_dir.glob("adapter_model.bin")]
        hint = f" ({pickled[0]} is a pickle, which loralab never loads)" if pickled else ""
        raise LoralabError(f"{weights_path}: weights file missing{hint}")
    if config.get("peft_type") != "LORA":
        raise LoralabError(f"{config_path}: peft_type is {config.get('peft_type')!r}; loralab reads LORA adapters only")
    for field, in_use, what in _UNSUPPORTED:
        if in_use(config.get(field)):
            raise LoralabError(f"{config_path}: {field}={config[field]!r} asks for {what}, which loralab does not support")
    head = tuple(config.get("modules_to_save") or ())
    saved = load_weights(weights_path)
    dora = bool(config.get("use_dora"))
    tensors = {_loralab_name(key, head, weights_path, dora): value for key, value in saved.items()}
    parts = (name.rpartition(".") for name in tensors)  # (module, ".", leaf)
    targets = sorted({module.removesuffix(".lora") if dora else module
                      for module, _, leaf in parts if module and leaf in ("lora_A", "lora_B")})
    if not targets:
        raise LoralabError(f"{weights_path}: holds no lora_A / lora_B tensors")
    try:
        lora = LoraConfig(r=config["r"], alpha=float(config["lora_alpha"]), dropout=float(config.get("lora_dropout", 0.0)),
                          targets=tuple(targets), rslora=bool(config.get("use_rslora", False)), use_dora=dora,
                          init=config.get("init_lora_weights") if config.get("init_lora_weights") in _INITS else "default")
    except KeyError as e:
        raise LoralabError(f"{config_path}: missing field {e.args[0]!r}") from None
    except LoralabError as e:
        raise LoralabError(f"{config_path}: {e}") from None
    metadata = read_metadata(weights_path)
    try:
        space = json.loads(metadata.get(SPACE_KEY, "{}"))
    except json.JSONDecodeError:
        raise LoralabError(f"{weights_path}: metadata {SPACE_KEY} is not JSON") from None
    try:
        quantize = QuantizeConfig(**json.loads(metadata.get(QUANTIZE_KEY, "{}")))
    except (json.JSONDecodeError, TypeError, LoralabError) as e:
        raise LoralabError(f"{weights_path}: metadata {QUANTIZE_KEY} is not a quantization setting ({e})") from None
    return PeftAdapter(adapter_dir, lora, tensors, head, config.get("base_model_name_or_path"),
                       metadata.get(FINGERPRINT_KEY), metadata.get(TASK_KEY, "multiple-choice"), space,
                       metadata.get(SCORING_KEY), quantize, _base_dtype(metadata, weights_path))


def _base_dtype(metadata: dict[str, str], path: Path) -> str:
    dtype = metadata.get(BASE_DTYPE_KEY, "float32")
    if dtype not in COMPUTE_DTYPE_NAMES:
        raise LoralabError(f"{path}: metadata {BASE_DTYPE_KEY}={dtype!r} is not one of {', '.join(COMPUTE_DTYPE_NAMES)}")
    return dtype


def bnb_config(quantize: QuantizeConfig, head: tuple[str, ...]):
    """transformers' `BitsAndBytesConfig` that loads a base quantized as loralab quantizes it (None: float base).

    Both quantize every linear layer outside the head with bitsandbytes' own functions, blocks of
    64, so the codes are the same bits; the head stays float (`llm_int8_skip_modules`).
    """
    if not quantize.enabled:
        return None
    import transformers

    from loralab.models.quantize import COMPUTE_DTYPES

    if quantize.method == "int8":
        return transformers.BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=0.0,
                                               llm_int8_skip_modules=list(head))
    return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quantize.method,
                                           bnb_4bit_use_double_quant=quantize.double_quant,
                                           bnb_4bit_compute_dtype=COMPUTE_DTYPES[quantize.compute_dtype],
                                           llm_int8_skip_modules=list(head))


def apply_peft_adapter(model: nn.Module, adapter: PeftAdapter) -> StrategyReport:
    """Adapt `model` with the adapter's LoRA settings and load its tensors, in place.

    Refuses a base model whose weights differ from the ones the adapter was exported from (when
    the adapter records them) or whose shapes do not fit the adapter's tensors.
    """
    arch = architecture(model)
    if adapter.fingerprint is not None and fingerprint(model) != adapter.fingerprint:
        raise LoralabError(
            f"{adapter.path}: this adapter was trained on a base model with fingerprint {adapter.fingerprint}, "
            f"but the model given has fingerprint {fingerprint(model)}; refusing to apply it to a different model"
        )
    for module in adapter.head:
        if not any(has_suffix(h, module) for h in arch.head):
            raise LoralabError(f"{adapter.path}: modules_to_save entry {module!r} is not this model's task head "
                               f"({', '.join(arch.head)}); loralab trains only LoRA and the head")
    if not adapter.head:
        warnings.warn(f"{adapter.path}: the adapter carries no task head; the head ({', '.join(arch.head)}) is "
                      "freshly initialised, so its scores carry no learned signal until it is trained", stacklevel=2)
    modules = dict(model.named_modules())
    for target in adapter.lora.targets:
        if target not in modules:
            raise LoralabError(f"{adapter.path}: the adapter adapts module {target!r}, which this "
                               f"{type(model).__name__} does not have (a different base model?)")
    report = apply_strategy(model, adapter.strategy)
    leaves = ("lora.lora_A", "lora.lora_B", "magnitude") if adapter.lora.use_dora else ("lora_A", "lora_B")
    lora = {f"{name}.{leaf}" for name in adapter.lora.targets for leaf in leaves}
    load_state_into(model, adapter.tensors, adapter.path / WEIGHTS, required=lora)
    return report
