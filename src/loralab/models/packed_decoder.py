"""Packed forward for decoders: the linear layers of a batch run on its real tokens only.

A batch of prompts is padded to its longest, and a decoder's padded forward spends as much on a pad
as on a word: every linear layer, norm and activation is per token. Here the real tokens of the
batch are taken out of the padded layout into one row, `(1, tokens)`, each with its own position
(0, 1, ... per sequence, so rotary embeddings are those of the unpadded sequence), and the model's
own decoder layers run on that row, so LoRA adapters, subspace parametrisations, quantized layers
and frozen flags all apply as in the padded forward.

Only attention mixes tokens. It must not mix sequences, so loralab registers an attention function
with transformers (`AttentionInterface`) that lays the queries, keys and values out again, one
sequence per row with padding at the end, and runs scaled-dot-product attention with a causal mask
and no other: with padding on the right a real query never sees a pad, which causality already puts
after it. That is the kernel's fastest case on CPU and GPU (no mask tensor to read), and the pads'
own rows are dropped. Attention is a small share of a short sequence's work; the linear layers,
which are most of it, never see a pad.

The hidden states come back in the caller's padded layout (zeros at the pads), so the scoring code
reads positions as before. The result is the padded forward's up to float rounding (tests compare
them on tiny Llama, Mistral and Qwen2 models).

Supported: the Llama family as transformers implements it (Llama, Mistral, Qwen2) when no sliding
window could cut into the batch. Anything else takes the model's padded forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface

IMPLEMENTATION = "loralab_packed"
FAMILIES = frozenset({"llama", "mistral", "qwen2"})
_LAYOUT = "loralab_layout"  # the keyword that carries the padded layout to the attention function


class _Layout:
    """Where each real token of a batch sits: (sequence, position) of row-major real positions."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask.bool()  # (batch, seq)
        self.lengths = self.mask.sum(1)  # (batch,)
        self.longest = int(self.lengths.max())
        starts = torch.cumsum(self.lengths, 0) - self.lengths  # (batch,) first packed index of each sequence
        rows = torch.repeat_interleave(torch.arange(len(self.lengths), device=mask.device), self.lengths)  # (tokens,)
        self.rows = rows
        self.positions = torch.arange(len(rows), device=mask.device) - starts[rows]  # (tokens,) 0.. per sequence

    def right_padded(self, packed: torch.Tensor) -> torch.Tensor:
        """(1, heads, tokens, dim) -> (batch, heads, longest, dim), each sequence from position 0."""
        heads, dim = packed.shape[1], packed.shape[3]
        out = packed.new_zeros(len(self.lengths), self.longest, heads, dim)
        out[self.rows, self.positions] = packed[0].transpose(0, 1)
        return out.transpose(1, 2)

    def packed(self, padded: torch.Tensor) -> torch.Tensor:
        """(batch, heads, longest, dim) -> (1, tokens, heads, dim), the layout transformers' attention returns."""
        return padded.transpose(1, 2)[self.rows, self.positions].unsqueeze(0)


def _attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Causal attention within each sequence of a packed row (see the module's docstring)."""
    layout: _Layout = kwargs[_LAYOUT]
    q, k, v = (layout.right_padded(t) for t in (query, key, value))  # (batch, heads, longest, dim)
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each key/value head serves several query heads
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling)
    return layout.packed(out), None


AttentionInterface.register(IMPLEMENTATION, _attention)
AttentionMaskInterface.register(IMPLEMENTATION, lambda *args, **kwargs: None)  # attention above masks itself


def supports(model: nn.Module, longest: int) -> bool:
    """True when `packed_hidden_states` can run `model` on sequences of up to `longest` tokens."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in FAMILIES or not hasattr(model, "base_model"):
        return False
    window = getattr(config, "sliding_window", None)
    return window is None or longest <= window


def packed_hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The last layer's hidden states (batch, seq, hidden) in the padded layout (zeros at the pads),
    computed on the real tokens only."""
    layout = _Layout(attention_mask)
    ids = input_ids[layout.mask].unsqueeze(0)  # (1, tokens)
    config = model.config
    saved = config._attn_implementation
    config._attn_implementation = IMPLEMENTATION
    try:
        hidden = model.base_model(input_ids=ids, position_ids=layout.positions.unsqueeze(0),
                                  **{_LAYOUT: layout}).last_hidden_state  # (1, tokens, hidden)
    finally:
        config._attn_implementation = saved
    out = hidden.new_zeros(*input_ids.shape, hidden.shape[-1])
    out[layout.mask] = hidden[0]
    return out
