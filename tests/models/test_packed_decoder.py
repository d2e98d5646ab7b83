"""The packed decoder forward: the padded forward's hidden states and gradients, on real tokens only."""

import pytest
import torch

from conftest import CAUSAL_LM, TINY, tiny_model
from loralab.models import packed_decoder
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig
from loralab.tasks.decoder_choice import hidden_states

PACKED = ["llama", "mistral", "qwen2"]


def batch(side: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (3, 9), generator=g)  # (batch, seq)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, :4] = 0  # five real tokens
    mask[1, :1] = 0  # eight
    return ids, (mask if side == "left" else mask.flip(1))


def lora_decoder(kind: str):
    model = tiny_model(kind, head=CAUSAL_LM)
    apply_strategy(model, StrategyConfig(Strategy.LORA, LoraConfig(r=4, alpha=8, targets=("all-linear",))))
    for name, p in model.named_parameters():  # B starts at zero; make the adapters count
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    return model.double().train()  # float64: what is left is a bug, not rounding


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind", PACKED)
def test_packed_equals_padded_hidden_states_and_gradients(kind, side):
    model = lora_decoder(kind)
    ids, mask = batch(side)
    assert packed_decoder.supports(model, ids.shape[1])
    real = mask.bool()
    results = []
    for packed in (False, True):
        model.zero_grad()
        hidden = hidden_states(model, ids, mask, packed=packed)  # (batch, seq, hidden)
        (hidden[real] ** 2).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((hidden[real].detach(), grads))
    (padded, padded_grads), (packed_, packed_grads) = results
    torch.testing.assert_close(packed_, padded, rtol=1e-10, atol=1e-10)
    assert padded_grads.keys() == packed_grads.keys() and padded_grads
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], rtol=1e-9, atol=1e-10)


def test_packed_hidden_states_are_zero_at_the_pads_and_the_attention_setting_is_restored():
    model = tiny_model("llama", head=CAUSAL_LM)
    ids, mask = batch("left")
    before = model.config._attn_implementation
    hidden = packed_decoder.packed_hidden_states(model, ids, mask)
    assert hidden.shape == (*ids.shape, model.config.hidden_size)
    assert bool((hidden[~mask.bool()] == 0).all()) and bool((hidden[mask.bool()] != 0).any())
    assert model.config._attn_implementation == before


def test_a_sequence_does_not_see_its_neighbours():
    """Changing the first sequence's tokens leaves the second's hidden states as they were."""
    model = tiny_model("qwen2", head=CAUSAL_LM)
    ids, mask = batch("right")
    changed = ids.clone()
    changed[0] = (changed[0] + 7) % 97 + 3
    a = packed_decoder.packed_hidden_states(model, ids, mask)
    b = packed_decoder.packed_hidden_states(model, changed, mask)
    assert not torch.allclose(a[0], b[0])
    torch.testing.assert_close(a[1:], b[1:])


@pytest.mark.parametrize("kind", sorted(set(k for k, (_, _, c) in TINY.items() if CAUSAL_LM in c) - set(PACKED)))
def test_other_decoders_take_the_padded_forward(kind):
    assert not packed_decoder.supports(tiny_model(kind, head=CAUSAL_LM), 9)


def test_a_sliding_window_shorter_than_the_batch_takes_the_padded_forward():
    model = tiny_model("mistral", head=CAUSAL_LM)
    model.config.sliding_window = 8
    assert packed_decoder.supports(model, 8)
    assert not packed_decoder.supports(model, 9)
