"""The quantized frozen base: loralab's LoRA on a bitsandbytes layer against peft's, merge, bytes, refusals."""

import copy

import peft
import pytest
from peft.tuners.lora import bnb as peft_bnb
import torch
from torch import nn

from conftest import CLASSIFICATION, tiny_batch, tiny_model, tiny_text_batch
from loralab.errors import LoralabError
from loralab.models.quantize import (QuantizeConfig, dequantize, dequantize_model, dequantized_weight, is_quantized,
                                     quantize_model, quantized_linear, stored_bytes)
from loralab.runs.config import RunConfig
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig, LoraLinear, lora_layers, merge, merge_lora, unmerge
from loralab.tasks.multiple_choice import choice_logits
from loralab.validate import SettingError

# Every kind of quantized base, with the peft bnb layer class that wraps the same kind.
SETTINGS = {
    "nf4-dq": (QuantizeConfig("nf4", double_quant=True), peft_bnb.Linear4bit),
    "nf4": (QuantizeConfig("nf4"), peft_bnb.Linear4bit),
    "fp4-dq": (QuantizeConfig("fp4", double_quant=True), peft_bnb.Linear4bit),
    "nf4-bf16": (QuantizeConfig("nf4", double_quant=True, compute_dtype="bfloat16"), peft_bnb.Linear4bit),
    "int8": (QuantizeConfig("int8"), peft_bnb.Linear8bitLt),
}


def random_linear(fan_in=128, fan_out=64, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(fan_in, fan_out)
    layer.requires_grad_(False)
    return layer


@pytest.mark.parametrize("name", list(SETTINGS))
@pytest.mark.parametrize("rslora", [False, True])
def test_lora_on_quantized_base_equals_peft_bnb_layer(name, rslora):
    config, peft_class = SETTINGS[name]
    base = random_linear()
    r, alpha = 4, 16.0
    ours = LoraLinear(copy.deepcopy(base), r=r, scaling=LoraConfig(r=r, alpha=alpha, rslora=rslora).scaling)
    ours.base = quantized_linear(ours.base, config)
    theirs = peft_class(quantized_linear(copy.deepcopy(base), config), "default", r=r, lora_alpha=alpha,
                        config=peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, use_rslora=rslora))
    theirs.float()  # peft keeps its adapters in the compute dtype; loralab's train in float32: compare like with like
    with torch.no_grad():
        ours.lora_B.normal_()
        theirs.lora_A["default"].weight.copy_(ours.lora_A)
        theirs.lora_B["default"].weight.copy_(ours.lora_B)
    assert torch.equal(ours.base.weight.data, theirs.base_layer.weight.data)  # the same codes
    x = torch.randn(2, 7, 128)
    xo, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yt = ours(xo), theirs(xt)
    assert yo.abs().max() > 0.1 and (yo - ours.base(x)).abs().max() > 0.1  # the update counts
    torch.testing.assert_close(yo, yt, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(yo)
    yo.backward(grad)
    yt.backward(grad)
    torch.testing.assert_close(xo.grad, xt.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.lora_A.grad, theirs.lora_A["default"].weight.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.lora_B.grad, theirs.lora_B["default"].weight.grad, atol=1e-5, rtol=1e-5)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_quantized_layer_computes_with_its_dequantized_weight(name):
    config, _ = SETTINGS[name]
    base = random_linear()
    quantized = quantized_linear(base, config)
    assert is_quantized(quantized) and not quantized.weight.requires_grad
    x = torch.randn(5, 128)
    plain = dequantize(quantized)
    assert type(plain) is nn.Linear and plain.weight.dtype == torch.float32
    exact = config.method != "int8" and config.compute_dtype == "float32"
    # 4-bit in float32 is dequantize-then-multiply: exactly the dequantized layer. bf16 rounds the
    # activations too; int8 quantizes them per row (LLM.int8()): both only near it.
    tolerance = 0 if exact else 0.05 * base(x).abs().max().item()
    assert (quantized(x) - plain(x)).abs().max() <= tolerance
    # The quantization error itself is what a 4-/8-bit code allows, and not zero.
    error = (dequantized_weight(quantized) - base.weight).abs()
    assert 0 < error.max() <= (0.25 if config.method != "int8" else 0.01) * base.weight.abs().max()


@pytest.mark.parametrize("method,double_quant,low,high", [
    ("nf4", True, 0.125, 0.135),  # 0.5 + 1/64 + 4/(64*256) bytes per weight, of 4
    ("nf4", False, 0.138, 0.145),  # 0.5 + 4/64
    ("fp4", True, 0.125, 0.135),
    ("int8", False, 0.249, 0.252),  # 1 + 4/768 (one fp32 scale per row)
])
def test_stored_bytes_per_weight(method, double_quant, low, high):
    layer = random_linear(768, 3072)
    quantized = quantized_linear(layer, QuantizeConfig(method, double_quant=double_quant))
    ratio = stored_bytes(quantized) / (layer.weight.numel() * 4)
    assert low <= ratio <= high


def adapted(model_type="bert", quantize=QuantizeConfig("nf4", double_quant=True), head=None, **lora):
    model = tiny_model(model_type) if head is None else tiny_model(model_type, head=head)
    settings = dict(r=4, alpha=16.0, targets=("query", "value"))
    settings.update(lora)
    apply_strategy(model, StrategyConfig(Strategy.LORA, LoraConfig(**settings)))
    report = quantize_model(model, quantize)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.3)
    return model, report


def test_quantize_model_takes_every_frozen_linear_layer_outside_the_head():
    model, report = adapted(targets=("all-linear",))
    quantized = {name for name, m in model.named_modules() if is_quantized(m)}
    assert all(name.endswith(".base") for name in quantized)  # every linear layer is adapted: each base is quantized
    assert report.layers == len(quantized) == len(lora_layers(model))
    assert type(model.classifier) is nn.Linear  # the head trains, in float
    model, report = adapted(targets=("query",))
    names = {name for name, m in model.named_modules() if is_quantized(m)}
    assert "bert.encoder.layer.0.attention.self.key" in names  # frozen, not adapted: quantized as it is
    assert "bert.encoder.layer.0.attention.self.query.base" in names
    assert "bert.pooler.dense" in names
    assert report.weights == sum(m.in_features * m.out_features for n, m in model.named_modules() if is_quantized(m))


@pytest.mark.parametrize("model_type", ["bert", "mpnet", "distilbert", "deberta-v2"])
@pytest.mark.parametrize("name", ["nf4-dq", "int8"])
def test_merged_dequantized_equals_unmerged(model_type, name):
    model, _ = adapted(model_type, SETTINGS[name][0], targets=("all-linear",), rslora=True, dropout=0.1)
    batch = tiny_batch()
    model.eval()
    with torch.no_grad():
        unmerged = choice_logits(model, batch)
        merge(model)
        merge(model)  # idempotent
        merged = choice_logits(model, batch)
        unmerge(model)
        again = choice_logits(model, batch)
    assert not any(is_quantized(m) for m in model.modules())  # merge turned every adapted base to float
    # 4-bit: the unmerged layer multiplies by the dequantized weight too, so only float rounding differs.
    # int8 also quantizes the activations (LLM.int8()), which the float merged model does not.
    atol = 1e-5 if name != "int8" else 0.05
    torch.testing.assert_close(merged, unmerged, atol=atol, rtol=0)
    torch.testing.assert_close(again, merged, atol=1e-5, rtol=0)


def test_merge_lora_leaves_the_plain_architecture_with_float_weights():
    model, _ = adapted(targets=("query",))
    batch = tiny_batch()
    with torch.no_grad():
        before = choice_logits(model.eval(), batch)
    dequantize_model(model)
    merge_lora(model)
    assert all(type(m).__module__.startswith(("torch.", "transformers.")) for m in model.modules())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(choice_logits(model, batch), before, atol=1e-5, rtol=0)


def test_training_on_a_quantized_base_moves_only_the_adapters_and_head():
    model, _ = adapted(dropout=0.1)
    frozen = {n: t.clone() for n, t in model.state_dict().items() if "lora_" not in n and "classifier" not in n}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    batch = tiny_batch()
    model.train()
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(choice_logits(model, batch), batch["labels"])
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
        optimizer.step()
        optimizer.zero_grad()
    for name, tensor in model.state_dict().items():
        if name in frozen:
            assert torch.equal(tensor, frozen[name]), name


def test_a_decoder_keeps_its_output_layer_float():
    from conftest import CAUSAL_LM

    model = tiny_model("llama", head=CAUSAL_LM)
    apply_strategy(model, StrategyConfig(Strategy.LORA, LoraConfig(r=2, targets=("all-linear",))))
    report = quantize_model(model, QuantizeConfig("nf4", double_quant=True))
    assert type(model.lm_head) is nn.Linear  # as transformers' own 4-bit loading leaves it (and often tied)
    assert report.layers == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    ids = torch.randint(3, 100, (2, 10))
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(layer.lora_B.grad is not None for layer in lora_layers(model))


def test_classification_head_on_a_quantized_base():
    model, _ = adapted("bert", head=CLASSIFICATION)
    batch = tiny_text_batch()
    out = model(**batch)
    out.loss.backward()
    assert all(layer.lora_B.grad is not None for layer in lora_layers(model))


@pytest.mark.parametrize("strategy", ["full", "subspace"])
def test_strategies_that_train_every_weight_are_refused(strategy):
    with pytest.raises(SettingError, match="quantize.method='nf4'.*trains every base weight"):
        RunConfig(train="t.csv", strategy=StrategyConfig(strategy), quantize=QuantizeConfig("nf4"))
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig("full"))
    with pytest.raises(LoralabError, match="no frozen linear layer to quantize"):
        quantize_model(model, QuantizeConfig("nf4"))


def test_selection_strategies_quantize_only_what_they_freeze():
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig("qv"))
    quantize_model(model, QuantizeConfig("nf4"))
    layer = model.bert.encoder.layer[0].attention.self
    assert type(layer.query) is nn.Linear and layer.query.weight.requires_grad  # trains, in float
    assert is_quantized(layer.key)


@pytest.mark.parametrize("settings,field", [
    (dict(method="nf3"), "quantize.method"),
    (dict(method="int8", double_quant=True), "quantize.double_quant"),
    (dict(method="int8", compute_dtype="bfloat16"), "quantize.compute_dtype"),
    (dict(method="nf4", compute_dtype="float64"), "quantize.compute_dtype"),
    (dict(method="nf4", double_quant="yes"), "quantize.double_quant"),
])
def test_bad_settings_name_their_field(settings, field):
    with pytest.raises(SettingError) as info:
        QuantizeConfig(**settings)
    assert info.value.name == field


def test_record_round_trip():
    config = RunConfig(train="t.csv", strategy=StrategyConfig("lora"),
                       quantize=QuantizeConfig("nf4", double_quant=True, compute_dtype="bfloat16"))
    assert RunConfig.from_dict(config.to_dict()) == config
    old = config.to_dict()
    del old["quantize"]  # a record from before quantization
    assert not RunConfig.from_dict(old).quantize.enabled
