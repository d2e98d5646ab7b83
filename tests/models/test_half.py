"""A frozen base in half precision (`--base-dtype`): what is cast, what stays float32, the products, a step."""

import copy

import pytest
import torch
from torch import nn

import transformers

from conftest import CLASSIFICATION, TINY, tiny_batch, tiny_model, tiny_text_batch
from loralab.errors import LoralabError
from loralab.models import float_base, half_base
from loralab.models import half
from loralab.models.half import HalfEmbedding, HalfLinear
from loralab.runs.config import RunConfig
from loralab.settings.model import QuantizeConfig
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig
from loralab.tasks.multiple_choice import choice_logits
from loralab.training.precision import autocast

LORA = StrategyConfig(strategy=Strategy.LORA, lora=LoraConfig(r=4, alpha=8.0, targets=("query", "value")))
# Every strategy a half base takes, with what trains in it.
ADAPTED = {
    "lora": LORA,
    "dora": StrategyConfig(strategy=Strategy.LORA, lora=LoraConfig(r=4, alpha=8.0, targets=("query", "value"),
                                                                   use_dora=True)),
    "vera": StrategyConfig(strategy=Strategy.VERA),
    "ia3": StrategyConfig(strategy=Strategy.IA3),
    "qv": StrategyConfig(strategy=Strategy.QV),
}


def adapted(config: StrategyConfig, dtype: str = "bfloat16", model_type: str = "bert"):
    model = tiny_model(model_type)
    apply_strategy(model, config)
    return model, half_base(model, dtype)


@pytest.mark.parametrize("name", list(ADAPTED))
def test_frozen_matrices_are_half_and_what_trains_is_float32(name):
    model, report = adapted(ADAPTED[name])
    assert report.modules > 0 and report.half_bytes * 2 == report.float_bytes
    for param_name, p in model.named_parameters():
        if p.requires_grad:
            assert p.dtype == torch.float32, param_name
    halves = {n for n, p in model.named_parameters() if p.dtype == torch.bfloat16}
    assert any("word_embeddings" in n for n in halves) and any("intermediate.dense.weight" in n for n in halves)
    assert not any(n.endswith(".bias") or "LayerNorm" in n or "classifier" in n for n in halves)
    assert all(not model.get_parameter(n).requires_grad for n in halves)


def test_float32_changes_nothing():
    model = tiny_model("bert")
    apply_strategy(model, LORA)
    before = copy.deepcopy(model.state_dict())
    assert half_base(model, "float32") is None
    assert all(torch.equal(before[k], v) and v.dtype == before[k].dtype for k, v in model.state_dict().items())
    assert not any(isinstance(m, (HalfLinear, HalfEmbedding)) for m in model.modules())


@pytest.mark.parametrize("name", list(ADAPTED))
def test_outputs_at_init_are_close_to_the_float32_base(name):
    ours, _ = adapted(ADAPTED[name])
    reference = tiny_model("bert")
    apply_strategy(reference, ADAPTED[name])
    batch = tiny_batch()
    with torch.no_grad():
        got, want = choice_logits(ours.eval(), batch), choice_logits(reference.eval(), batch)
    assert got.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: each weight moves by up to 2^-9 of itself.
    torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
    assert not torch.equal(got, want)  # the base really is rounded


def test_a_step_changes_only_what_trains_and_keeps_the_dtypes():
    model, _ = adapted(LORA)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    batch = tiny_batch()
    loss = nn.functional.cross_entropy(choice_logits(model, batch), batch["labels"])
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    optimizer.step()
    for n, p in model.named_parameters():
        assert p.dtype == before[n].dtype
        if not p.requires_grad:
            assert torch.equal(p, before[n]), n
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any(n.endswith("lora_B") for n in moved) and any(n.startswith("classifier") for n in moved)


def test_the_backward_pass_keeps_no_float32_copy_of_a_weight():
    layer = nn.Linear(64, 32).requires_grad_(False)
    half_base_layer = copy.deepcopy(layer)
    half_base_layer.weight.data = half_base_layer.weight.data.bfloat16()
    half_base_layer.__class__ = HalfLinear
    x = torch.randn(3, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = half_base_layer(x)
    assert [t.dtype for t in saved] == [torch.bfloat16]  # the stored weight itself, not a cast copy
    assert y.dtype == torch.float32
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(x.grad, g @ half_base_layer.weight.float())
    torch.testing.assert_close(y, x @ half_base_layer.weight.float().t() + layer.bias)


def test_a_large_weight_is_cast_a_block_at_a_time(monkeypatch):
    monkeypatch.setattr(half, "CHUNK", 100)  # blocks of 3 rows of 32
    weight = torch.randn(10, 32).bfloat16()
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(half.cast_product(x, weight, torch.float32), x @ weight.float().t())
    g = torch.randn(2, 5, 10)
    torch.testing.assert_close(half.cast_back_product(g, weight, torch.float32), g @ weight.float())


def test_under_bf16_autocast_products_run_in_bf16():
    model, _ = adapted(LORA)
    batch = tiny_batch()
    with torch.no_grad(), autocast("bf16", "cpu"):
        got = choice_logits(model.eval(), batch)
    reference = tiny_model("bert")
    apply_strategy(reference, LORA)
    with torch.no_grad():
        want = choice_logits(reference.eval(), batch)
    torch.testing.assert_close(got.float(), want, atol=5e-2, rtol=5e-2)


def test_a_decoder_casts_its_tied_embedding_once():
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY["llama"][1], tie_word_embeddings=True))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    apply_strategy(model, LORA)
    report = half_base(model, "bfloat16")
    assert model.lm_head.weight is model.model.embed_tokens.weight and model.lm_head.weight.dtype == torch.bfloat16
    assert report.weights == sum(p.numel() for p in model.parameters() if p.dtype == torch.bfloat16)
    batch = tiny_text_batch()
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.logits).all()


def test_float_base_undoes_the_classes_and_keeps_the_rounded_values():
    model, _ = adapted(LORA)
    rounded = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    assert float_base(model) > 0
    assert not any(isinstance(m, (HalfLinear, HalfEmbedding)) for m in model.modules())
    assert all(p.dtype == torch.float32 and torch.equal(p, rounded[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize("strategy", ["full", "galore", "subspace"])
def test_a_half_base_is_refused_where_every_base_weight_trains(strategy):
    with pytest.raises(LoralabError, match=f"^--base-dtype bfloat16 with --strategy {strategy}: "):
        RunConfig(train="x.csv", base_dtype="bfloat16", strategy=StrategyConfig(strategy=Strategy.parse(strategy)))


def test_a_half_base_is_refused_with_a_quantized_one():
    with pytest.raises(LoralabError, match="^--base-dtype float16 with --quantize nf4: "):
        RunConfig(train="x.csv", base_dtype="float16", strategy=LORA, quantize=QuantizeConfig("nf4"))


def test_an_unknown_dtype_is_refused_and_old_records_read_as_float32():
    with pytest.raises(LoralabError, match="base_dtype"):
        RunConfig(train="x.csv", base_dtype="int4", strategy=LORA)
    data = RunConfig(train="x.csv", strategy=LORA).to_dict()
    assert data["base_dtype"] == "float32"
    del data["base_dtype"]
    assert RunConfig.from_dict(data).base_dtype == "float32"


@pytest.mark.parametrize("name", ["lora", "dora", "qv"])
def test_a_bf16_autocast_step_on_a_half_base_gives_float32_gradients(name):
    model, _ = adapted(ADAPTED[name])
    model.train()
    batch = tiny_batch()
    with autocast("bf16", "cpu"):
        loss = nn.functional.cross_entropy(choice_logits(model, batch), batch["labels"])
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_gpt2_conv1d_weights_are_half_and_merge_back_in_float32():
    from loralab.runs.merge import merge_into_base
    from loralab.strategies.lora import lora_layers

    model = tiny_model("gpt2", head=CLASSIFICATION)
    apply_strategy(model, LORA)
    half_base(model, "bfloat16")
    assert model.transformer.h[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert model.transformer.h[0].attn.c_attn.base.weight.dtype == torch.bfloat16
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_(std=0.1)
    batch = {k: v for k, v in tiny_text_batch().items() if k != "labels"}
    with torch.no_grad():
        adapted = model(**batch).logits
        merge_into_base(model, Strategy.LORA)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        torch.testing.assert_close(model(**batch).logits, adapted, atol=1e-5, rtol=1e-5)
