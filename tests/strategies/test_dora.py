import copy

import peft
import pytest
import torch

from adapter_cases import (adapted, assert_round_trip, base_model, batch, outputs, perturb, targets,
                           trainable)
from loralab.errors import LoralabError
from loralab.models.quantize import QuantizeConfig, dequantize_model, is_quantized, quantize_model
from loralab.strategies.dora import (DoraConfig, DoraLinear, apply_dora, dora_layers, load_peft_state, merge,
                                     merge_dora, peft_state, unmerge)
from loralab.strategies.lora import LoraConfig, LoraLinear

# (model type, LoRA settings): an encoder's attention and a decoder's every linear layer, rsLoRA and dropout.
CASES = {
    "bert-qv": ("bert", LoraConfig(r=4, alpha=8.0, targets=("query", "value"))),
    "bert-attention-dropout": ("bert", LoraConfig(r=2, alpha=4.0, dropout=0.1,
                                                  targets=("query", "key", "value", "attention_output"))),
    "llama-all-linear-rslora": ("llama", LoraConfig(r=2, alpha=4.0, rslora=True, targets=("all-linear",))),
}
PREFIX = "base_model.model."


def ours(case):
    model_type, lora = CASES[case]
    return adapted(model_type, apply_dora, DoraConfig(lora), lora.targets)


def theirs(case):
    model_type, lora = CASES[case]
    base = base_model(model_type)
    config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, use_rslora=lora.rslora,
                             target_modules=targets(base, lora.targets), use_dora=True)
    return peft.get_peft_model(base, config)


def to_peft(model, peft_model):
    peft.set_peft_model_state_dict(peft_model, {PREFIX + k: v for k, v in peft_state(model).items()})


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_trainable_count_outputs_and_gradients_as_peft(case):
    model, reference = ours(case), theirs(case)
    assert sum(p.numel() for p in trainable(model).values()) == reference.get_nb_trainable_parameters()[0]
    perturb(model)
    to_peft(model, reference)
    torch.testing.assert_close(outputs(model), outputs(reference), atol=1e-5, rtol=0)
    assert (outputs(model) - outputs(base_model(CASES[case][0]))).abs().max() > 1e-3  # not vacuous: 100 times the tolerance

    # Gradients too: peft detaches the norm as the paper suggests (Sec. 4.3), so must loralab.
    for m in (model, reference):
        m.train()
        for module in m.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0  # the same function in both, in training mode
        m(**batch()).logits.square().sum().backward()
    # peft's parameter names hold the adapter's name: `lora_A.default.weight`, `lora_magnitude_vector.default.weight`.
    named = {n.removeprefix(PREFIX).replace(".default", ""): p for n, p in reference.named_parameters()}
    for key, param in peft_state(model).items():
        torch.testing.assert_close(param.grad, named.get(key, named.get(key + ".weight")).grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_adapted_equals_base_before_training(case):
    model_type, _ = CASES[case]
    torch.testing.assert_close(outputs(ours(case)), outputs(base_model(model_type)), atol=1e-6, rtol=0)
    assert all(torch.equal(layer.magnitude, layer.weight_norm()) for layer in dora_layers(ours(case)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_merged_equals_unmerged_and_merge_is_idempotent(case):
    model = ours(case)
    perturb(model)
    unmerged = outputs(model)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    merge(model), merge(model)
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=0)
    unmerge(model), unmerge(model)
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=0)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, before[name], atol=1e-6, rtol=0)
    merge_dora(model)
    assert not dora_layers(model) and "lora" not in " ".join(model.state_dict())
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_save_then_load_is_bitwise(case, tmp_path):
    model = ours(case)
    perturb(model)
    assert_round_trip(model, ours(case), tmp_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_peft_state_round_trip(case):
    model, reference = ours(case), theirs(case)
    perturb(model)
    to_peft(model, reference)
    back = ours(case)
    load_peft_state(back, {k.removeprefix(PREFIX): v for k, v in peft.get_peft_model_state_dict(reference).items()})
    torch.testing.assert_close(outputs(back), outputs(model), atol=0, rtol=0)
    torch.testing.assert_close(outputs(reference), outputs(model), atol=1e-5, rtol=0)


def test_qdora_norm_reads_the_dequantized_weight_and_merges():
    model = ours("llama-all-linear-rslora")
    perturb(model)
    quantize_model(model, QuantizeConfig("nf4"))
    assert all(is_quantized(layer.base) for layer in dora_layers(model))
    quantized = outputs(model)
    # The same DoRA on a float base holding dequant(Q(W0)) computes the same function.
    plain = copy.deepcopy(model)
    assert dequantize_model(plain) == len(dora_layers(model))
    torch.testing.assert_close(outputs(plain), quantized, atol=1e-5, rtol=0)
    merge(model)
    assert not any(is_quantized(layer.base) for layer in dora_layers(model))
    torch.testing.assert_close(outputs(model), quantized, atol=1e-5, rtol=0)


def test_norm_is_computed_once_per_forward_not_per_token():
    layer = DoraLinear(LoraLinear(torch.nn.Linear(6, 5), r=2, scaling=2.0))
    calls = []
    original = layer.weight_norm
    layer.weight_norm = lambda: calls.append(1) or original()
    layer(torch.randn(3, 7, 6))  # 21 tokens
    assert len(calls) == 1


def test_invalid_config_names_the_field():
    with pytest.raises(LoralabError, match="strategy.dora.lora"):
        DoraConfig(lora={"r": 2})
