"""A quantized frozen base: the linear weights a strategy leaves frozen, stored in 4 or 8 bits.

QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs") keeps the frozen base
in 4 bits and trains LoRA adapters in higher precision on top of it; every product dequantizes the
weight on the fly:

    h = dequant(Q(W0)) x + (alpha / r) B A x

- NF4 (Sec. 3): 16 levels at the quantiles of N(0, 1), one absmax scale per block of 64 weights.
  FP4: a 4-bit float (e2m1) with the same blocks.
- Double quantization (Sec. 3): the fp32 block scales are themselves quantized to 8 bits in blocks
  of 256, so a weight costs 0.5 + 1/64 + 4/(64 * 256) bytes: 0.129 of fp32 (0.141 without).
- int8: LLM.int8() (Dettmers et al. 2022) without the outlier decomposition (threshold 0): one
  absmax scale per output row, activations quantized per row too; about 0.25 of fp32.

`quantize_model` replaces every `nn.Linear` outside the task head (and a decoder's output layer)
whose weight does not train (inside a `LoraLinear` too: its `base` becomes the quantized layer) by
a bitsandbytes layer, after the strategy is applied. Nothing else changes: embeddings, norms, biases and the head stay as they
are. Quantization is deterministic, so a run is rebuilt from its float base and its record alone.
`dequantize` turns a quantized layer back into a float `nn.Linear` holding exactly the weight the
quantized layer computed with: merging a QLoRA run writes dequant(Q(W0)) + s B A, which differs
from W0 + s B A by the quantization error, not by anything the merge adds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from loralab.errors import LoralabError
from loralab.heap import release_heap
from loralab.models.architectures import architecture, is_head
from loralab.settings.model import Method, QuantizeConfig
from loralab.validate import SettingError

BLOCKSIZE = 64  # weights per absmax scale (QLoRA's, and bitsandbytes' and transformers' default)
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}






@dataclass(frozen=True)
class QuantizationReport:
    """What `quantize_model` stored in fewer bits, and what it costs."""

    method: str
    double_quant: bool
    compute_dtype: str
    layers: int
    weights: int
    """Weights held by the quantized layers."""
    quantized_bytes: int
    """Bytes those weights take now: codes, scales and quantization maps (biases not counted)."""
    float_bytes: int
    """Bytes the same weights took before."""

    def to_dict(self) -> dict:
        return {"method": self.method, "double_quant": self.double_quant, "compute_dtype": self.compute_dtype,
                "layers": self.layers, "weights": self.weights, "quantized_bytes": self.quantized_bytes,
                "float_bytes": self.float_bytes, "bytes_ratio": round(self.quantized_bytes / self.float_bytes, 5)}


def _bnb():
    try:
        import bitsandbytes
    except ImportError:
        raise LoralabError("--quantize needs the 'bitsandbytes' package (0.48 or later runs 4-bit on CPU): "
                           "pip install bitsandbytes") from None
    return bitsandbytes


def is_quantized(module: nn.Module) -> bool:
    """A bitsandbytes 4-bit or 8-bit linear layer."""
    return type(module).__module__.startswith("bitsandbytes.")


def _frozen_linear_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, layer) of every plain nn.Linear outside the head whose weight does not train."""
    arch = architecture(model)
    output = getattr(arch, "output", "")  # a decoder's lm_head stays float, as in QLoRA and transformers (often tied)
    found = []
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            full = f"{parent_name}.{name}" if parent_name else name
            if (type(child) is nn.Linear and not is_head(full, arch) and not child.weight.requires_grad
                    and not parametrize.is_parametrized(child) and not (output and full == output)):
                found.append((parent, name, child))
    return found


def quantized_linear(layer: nn.Linear, config: QuantizeConfig) -> nn.Module:
    """A bitsandbytes layer computing `layer` from its weight quantized by `config.method` (on its device)."""
    bnb = _bnb()
    method = Method(config.method)
    device, has_bias = layer.weight.device, layer.bias is not None
    weight = layer.weight.detach()
    if method.four_bit:
        quantized = bnb.nn.Linear4bit(layer.in_features, layer.out_features, bias=has_bias,
                                      compute_dtype=COMPUTE_DTYPES[config.compute_dtype],
                                      compress_statistics=config.double_quant, quant_type=method.value, device="meta")
        quantized.weight = bnb.nn.Params4bit(weight, requires_grad=False, blocksize=BLOCKSIZE,
                                             compress_statistics=config.double_quant, quant_type=method.value,
                                             module=quantized)
        # On CPUs with AVX512-BF16, bitsandbytes repacks the weight in place on the first no-grad eval
        # forward and then multiplies in bf16 (outputs about 1e-2 off on a 768 x 768 layer), after which a
        # training forward fails; loralab keeps the one exact path, dequantize then multiply.
        quantized.support_avx512bf16_for_cpu = False
    else:
        quantized = bnb.nn.Linear8bitLt(layer.in_features, layer.out_features, bias=has_bias, has_fp16_weights=False,
                                        threshold=0.0, device="meta")
        quantized.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    if has_bias:
        quantized.bias = nn.Parameter(layer.bias.detach(), requires_grad=False)
    quantized.weight = quantized.weight.to(device)  # quantization happens here, in bitsandbytes' `to`
    return quantized


def quantize_model(model: nn.Module, config: QuantizeConfig) -> QuantizationReport | None:
    """Quantize every frozen `nn.Linear` outside the head, in place (after the strategy is applied).

    Returns what was quantized, or None when `config` asks for nothing. Refuses when the strategy
    left no linear layer frozen (full fine-tuning and the random subspace move every weight).
    """
    if not config.enabled:
        return None
    targets = _frozen_linear_layers(model)
    if not targets:
        raise LoralabError(f"--quantize {config.method}: no frozen linear layer to quantize; the strategy trains every "
                           "base weight, and a quantized weight cannot train (use lora: QLoRA, or attention / qv)")
    layers = weights = quantized_bytes = float_bytes = 0
    for parent, attribute, layer in targets:
        quantized = quantized_linear(layer, config)
        setattr(parent, attribute, quantized)
        layers += 1
        weights += layer.weight.numel()
        float_bytes += layer.weight.numel() * layer.weight.element_size()
        quantized_bytes += stored_bytes(quantized)
    # The replaced float weights' memory goes back to the OS: else the process's RSS (loralab's peak
    # memory on CPU) would still count them.
    release_heap(collect=True)
    return QuantizationReport(config.method, config.double_quant, config.compute_dtype, layers, weights,
                              quantized_bytes, float_bytes)


def stored_bytes(layer: nn.Module) -> int:
    """Bytes a quantized layer keeps for its weight: the codes and every scale and map (its state dict, bias aside)."""
    return sum(t.numel() * t.element_size() for k, t in layer.state_dict().items()
               if k != "bias" and isinstance(t, torch.Tensor))


def dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """The (out, in) weight a quantized layer multiplies by, as float32 (exact: a 4-bit layer's
    bfloat16 or float16 compute weight is rounded to that dtype first, as its product does)."""
    bnb = _bnb()
    weight = layer.weight
    if getattr(weight, "quant_state", None) is not None:  # 4-bit
        dtype = layer.compute_dtype or torch.float32
        return bnb.functional.dequantize_4bit(weight.data, weight.quant_state).to(dtype).float()
    scales = getattr(weight, "SCB", None)
    if scales is None:
        scales = layer.state.SCB
    return weight.data.float() * (scales.float()[:, None] / 127)  # int8: one absmax scale per row


@torch.no_grad()
def dequantize(layer: nn.Module) -> nn.Linear:
    """A float32 `nn.Linear` with the weight (and bias) `layer` computes with."""
    weight = dequantized_weight(layer)
    plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    plain.weight = nn.Parameter(weight.clone(), requires_grad=False)
    if layer.bias is not None:
        plain.bias = nn.Parameter(layer.bias.detach().float().clone(), requires_grad=False)
    return plain


def dequantize_model(model: nn.Module) -> int:
    """Replace every quantized layer by its float `dequantize`d twin, in place; returns how many."""
    found = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if is_quantized(child)]
    for parent, name, child in found:
        setattr(parent, name, dequantize(child))
    return len(found)
