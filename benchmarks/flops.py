"""Model FLOPs of one training step, counted from the shapes, and the machine's matrix-multiply rate.

Counted per step (multiply and add are two FLOPs; real tokens only, so padding a forward computes
is waste, not model work):

- a linear layer (in -> out) on R rows: forward 2 R in out; backward 2 R in out for the input
  gradient when its input needs one, and 2 R in out for the weight gradient when its weight
  trains. The pooler and the classifier run on one row per sequence, every other linear on every
  token. An input needs a gradient unless nothing before it trains: with the embeddings frozen the
  first layer's query, key and value inputs need none.
- a LoRA adapter (r) on a layer: 2 R r (in + out) forward, the same for dA and dB together, and
  the same again for its share of the input gradient when one is needed.
- attention, per layer and sequence of L real tokens: 4 L^2 hidden forward (q k^T and the
  weighted sum of v), twice that backward.
- what a strategy's own machinery costs beyond the model (the random subspace's projection, the
  optimizer) is not model work; it shows as a lower utilisation.

MFU = (model FLOPs / step seconds) / (FLOP/s of plain matrix multiplies of the step's own linear
shapes, forward and backward, timed in the same run). On a CPU that rate, not a datasheet peak, is
what the step could reach at best with its own shapes and thread count.
"""

from __future__ import annotations

import re
import time

import torch
from torch import nn
from torch.nn.utils import parametrize

from loralab.strategies.lora import LoraLinear

_FIRST_LAYER_QKV = re.compile(r"\.layer\.0\.attention\.(self\.(query|key|value)|attn\.[qkv])$")


def _linears(model: nn.Module):
    """(name, in, out, weight trains, LoRA rank or 0) for every linear layer the forward runs."""
    lora = {id(m.base): m.lora_A.shape[0] for m in model.modules() if isinstance(m, LoraLinear)}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or ".original_module" in name:  # peft keeps an unused copy of the head
            continue
        weight_trains = module.weight.requires_grad or parametrize.is_parametrized(module, "weight")
        yield name, module.in_features, module.out_features, weight_trains, lora.get(id(module), 0)


def _embeddings_train(model: nn.Module) -> bool:
    """Whether anything in the embeddings trains (then every layer's input needs a gradient)."""
    for name, module in model.named_modules():
        if name.endswith("embeddings") and (any(p.requires_grad for p in module.parameters())
                                            or any(parametrize.is_parametrized(m) for m in module.modules())):
            return True
    return False


def _layer_name(name: str) -> str:
    """The model's own name of the layer a (peft or loralab) adapter part belongs to."""
    return re.sub(r"(\.lora_[AB](\.\w+)?|\.base_layer|\.base)$", "", name)


def _per_sequence(name: str) -> bool:
    return "pooler" in name or name.endswith("classifier") or ".classifier." in name


def step_flops(model: nn.Module, lengths: list[int]) -> dict[str, float]:
    """Model FLOPs of a training step on sequences of these real lengths, by part."""
    tokens, sequences = sum(lengths), len(lengths)
    config = model.config if hasattr(model, "config") else model.base_model.model.config
    hidden, layers = config.hidden_size, config.num_hidden_layers
    embeddings_train = _embeddings_train(model)
    parts = {"linear_forward": 0.0, "linear_backward": 0.0, "lora": 0.0, "attention": 0.0}
    first = {}  # the first layer's "query"/"key"/"value" -> whether its output needs a gradient
    for name, fan_in, fan_out, weight_trains, rank in _linears(model):
        match = _FIRST_LAYER_QKV.search(_layer_name(name))
        if match:
            role = match.group(0)[-1] if match.group(0)[-2] == "." else match.group(2)[0]  # q, k or v
            first[role] = first.get(role, False) or weight_trains or bool(rank) or ".lora_" in name
        rows = sequences if _per_sequence(name) else tokens
        input_grad = embeddings_train or not _FIRST_LAYER_QKV.search(_layer_name(name))
        if ".lora_A" in name:  # peft's adapters are linear layers of their own: x -> A x
            parts["lora"] += 2 * rows * fan_in * fan_out * (2 + int(input_grad))
        elif ".lora_B" in name:  # A x -> B A x: its input always needs a gradient (A trains)
            parts["lora"] += 2 * rows * fan_in * fan_out * 3
        else:
            parts["linear_forward"] += 2 * rows * fan_in * fan_out
            parts["linear_backward"] += 2 * rows * fan_in * fan_out * (int(input_grad) + int(weight_trains))
            if rank:  # loralab's adapter, counted as the two linear layers it is
                parts["lora"] += 2 * rows * rank * (fan_in * (2 + int(input_grad)) + fan_out * 3)
    # Per layer: q k^T and P v forward; backward dP (when q or k needs a gradient), dV, dQ, dK, each
    # 2 L^2 hidden. Past the first layer (or with the embeddings training) all four are needed.
    square = sum(2 * length * length * hidden for length in lengths)
    if embeddings_train or not first:
        first_backward = 4
    else:
        q, k, v = (first.get(role, False) for role in "qkv")
        first_backward = int(q or k) + int(v) + int(q) + int(k)
    parts["attention"] = square * (2 * layers + 4 * (layers - 1) + first_backward)
    parts["total"] = sum(parts.values())
    return parts


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """The distinct (in, out) shapes of the per-token linear layers (the bulk of the work)."""
    shapes = []
    for name, fan_in, fan_out, _, _ in _linears(model):
        if ".lora_" in name or _per_sequence(name):
            continue
        if (fan_in, fan_out) not in shapes:
            shapes.append((fan_in, fan_out))
    return shapes


def gemm_rate(shapes: list[tuple[int, int]], tokens: int, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu", repeats: int = 2) -> float:
    """FLOP/s of plain matrix multiplies of a step's linear shapes on `tokens` rows: forward
    (tokens x in)(in x out), input gradient (tokens x out)(out x in), weight gradient (out x tokens)(tokens x in)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    operands = []
    for fan_in, fan_out in shapes:
        x = torch.randn(tokens, fan_in, generator=g).to(device, dtype)
        w = torch.randn(fan_out, fan_in, generator=g).to(device, dtype)
        dy = torch.randn(tokens, fan_out, generator=g).to(device, dtype)
        operands += [(x, w.t()), (dy, w), (dy.t(), x)]
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in operands)
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass warms the kernels up
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for a, b in operands:
            a @ b
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return flops / best
