"""What each method looks like to peft: its `adapter_config.json` and its tensors' names.

    loralab                                  peft (after `base_model.model.`)
    LoraLinear   <m>.lora_A / lora_B         <m>.lora_A.weight / lora_B.weight            LORA
    DoraLinear   <m>.lora.lora_A, magnitude  <m>.lora_A.weight, <m>.lora_magnitude_vector LORA, use_dora
    VeraLinear   <m>.lambda_b / lambda_d     <m>.vera_lambda_b / vera_lambda_d            VERA (A, B from the seed)
    IA3Linear    <m>.scale                   <m>.ia3_l, (out, 1) or (1, in)               IA3

PiSSA and OLoRA travel as peft saves them: LoRA with `init_lora_weights` "pissa" or "olora", which
peft honours on loading by factoring the original base weight again and keeping the residual in the
base, exactly as loralab's run did (the SVD's signs cancel in U_r S_r V_r^T). A randomized PiSSA
(`pissa_niter`) is refused: peft's sketch is its own, so its residual would differ.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.models import architecture, is_decoder
from loralab.settings.strategy import LoraConfig, Strategy, StrategyConfig
from loralab.strategies import dora, ia3, vera
from loralab.strategies.lora import LoraLinear


def _lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    """The LoRA layers by the name peft gives them: a DoRA layer's own name for the LoRA it holds."""
    doras = {name: m for name, m in model.named_modules() if isinstance(m, dora.DoraLinear)}
    inner = {f"{name}.lora" for name in doras}
    plain = {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear) and name not in inner}
    return {**plain, **{name: m.lora for name, m in doras.items()}}


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every adapter's trained tensors under peft's names (without the `base_model.model.` prefix)."""
    tensors = {**vera.peft_state(model), **ia3.peft_state(model)}
    for name, layer in _lora_layers(model).items():
        tensors[f"{name}.lora_A.weight"] = layer.lora_A
        tensors[f"{name}.lora_B.weight"] = layer.lora_B
    tensors.update(dora.peft_state(model))  # the magnitudes (and the same A, B under the same names)
    return tensors


def _common(model: nn.Module, base_model: str, layers: dict[str, nn.Module]) -> dict[str, Any]:
    return {
        # peft has no multiple-choice task (the head goes in modules_to_save); a decoder keeps its LM head.
        "task_type": "CAUSAL_LM" if is_decoder(model) else None,
        "base_model_name_or_path": base_model,
        # Full module names: peft matches an entry equal to the name or a dot-bounded suffix, so
        # these select exactly the modules loralab adapted, whatever targets chose them.
        "target_modules": sorted(layers),
        "modules_to_save": list(architecture(model).head),
        "fan_in_fan_out": any(m.transposed for m in layers.values()),  # GPT-2's Conv1D
        "inference_mode": True,
    }


def lora_config(model: nn.Module, lora: LoraConfig, base_model: str) -> dict[str, Any]:
    """peft's LORA config that rebuilds this model's LoRA (or DoRA) adapters exactly."""
    if lora.init == "pissa" and lora.pissa_niter is not None:
        raise LoralabError("export-peft: a PiSSA run with pissa_niter cannot travel to peft (its randomized SVD "
                           "draws its own sketch, so the residual base would differ); use 'loralab merge'")
    layers = _lora_layers(model)
    return {"peft_type": "LORA", **_common(model, base_model, layers), "r": lora.r, "lora_alpha": lora.alpha,
            "lora_dropout": lora.dropout, "use_rslora": lora.rslora, "bias": "none", "use_dora": lora.use_dora,
            "init_lora_weights": True if lora.init == "default" else lora.init, "rank_pattern": {}, "alpha_pattern": {}}


def vera_config(model: nn.Module, config: StrategyConfig, base_model: str) -> dict[str, Any]:
    """peft's VERA config: the projections are not saved, peft rebuilds them from the same seed."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, vera.VeraLinear)}
    settings = config.vera
    return {"peft_type": "VERA", **_common(model, base_model, layers), "r": settings.r,
            "projection_prng_key": settings.seed, "save_projection": False, "vera_dropout": settings.dropout,
            "d_initial": settings.d_initial, "bias": "none", "init_weights": True}


def ia3_config(model: nn.Module, config: StrategyConfig, base_model: str) -> dict[str, Any]:
    """peft's IA3 config: every rescaled layer a target, those scaled at their input also feed-forward."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, ia3.IA3Linear)}
    return {"peft_type": "IA3", **_common(model, base_model, layers),
            "feedforward_modules": sorted(name for name, m in layers.items() if m.feedforward),
            "init_ia3_weights": True}


def adapter_config(model: nn.Module, config: StrategyConfig, base_model: str, run: str = "this run") -> dict[str, Any]:
    """The `adapter_config.json` for a model adapted by `config`; a strategy peft has no adapter for is refused."""
    if config.strategy is Strategy.LORA:
        return lora_config(model, config.lora, base_model)
    if config.strategy is Strategy.VERA:
        return vera_config(model, config, base_model)
    if config.strategy is Strategy.IA3:
        return ia3_config(model, config, base_model)
    raise LoralabError(f"{run}: export-peft writes LoRA, DoRA, VeRA and IA3 adapters, but this run used strategy "
                       f"{config.strategy.value!r}; use 'loralab merge' to get a standalone model")
