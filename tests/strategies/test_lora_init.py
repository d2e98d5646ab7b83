import copy

import peft
import pytest
import torch

from adapter_cases import adapted, assert_round_trip, base_model, outputs, perturb, targets, trainable
from loralab.errors import LoralabError
from loralab.models.quantize import QuantizeConfig, dequantized_weight, quantized_linear
from loralab.runs.peft import PREFIX, peft_state
from loralab.strategies.lora import LoraConfig, LoraLinear, apply_lora, lora_layers, merge, unmerge
from loralab.strategies.lora_init import Init, LoraInitConfig, apply_lora_init, factors, initialise

# (model type, LoRA settings, initialisation, peft's init_lora_weights or None where peft's draws differ)
CASES = {
    "bert-pissa": ("bert", LoraConfig(r=4, alpha=8.0), LoraInitConfig(Init.PISSA), "pissa"),
    "llama-pissa-rslora": ("llama", LoraConfig(r=2, alpha=4.0, rslora=True, targets=("all-linear",)),
                           LoraInitConfig(Init.PISSA), "pissa"),
    "bert-pissa-niter": ("bert", LoraConfig(r=4, alpha=8.0), LoraInitConfig(Init.PISSA, niter=2), None),
    "bert-olora": ("bert", LoraConfig(r=4, alpha=8.0, targets=("query", "key", "value")), LoraInitConfig(Init.OLORA),
                   "olora"),
    "llama-olora": ("llama", LoraConfig(r=2, alpha=16.0, targets=("all-linear",)), LoraInitConfig(Init.OLORA), "olora"),
}


def lora_state(model):
    """The adapters under peft's key names (loralab's LoRA export, head left out: it does not train here)."""
    return {k: v for k, v in peft_state(model).items() if ".lora_" in k}


def ours(case):
    model_type, lora, init, _ = CASES[case]
    model = adapted(model_type, apply_lora, lora, lora.targets)
    apply_lora_init(model, init)
    return model


def theirs(case):
    model_type, lora, _, init = CASES[case]
    base = base_model(model_type)
    return peft.get_peft_model(base, peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, use_rslora=lora.rslora,
                                                     target_modules=targets(base, lora.targets),
                                                     init_lora_weights=init))


@pytest.mark.parametrize("case", sorted(CASES))
def test_adapted_equals_base_before_training_and_merge_gives_w0(case):
    model, base = ours(case), base_model(CASES[case][0])
    torch.testing.assert_close(outputs(model), outputs(base), atol=1e-5, rtol=0)
    layer = lora_layers(model)[0]
    assert layer.lora_B.abs().max() > 0.01  # B starts off zero: the principal part trains
    merge(model)
    w0 = dict(base.named_parameters())
    for name, p in model.named_parameters():
        if name.endswith("base.weight"):
            torch.testing.assert_close(p, w0[name.replace("base.", "")], atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_merged_equals_unmerged_and_save_load_is_bitwise(case, tmp_path):
    model = ours(case)
    perturb(model, scale=0.05)
    # The residual is rebuilt from the base and the seed; the trained A and B are what a run saves. Checked
    # before merging: a merge and an unmerge add and subtract B A, which gives W0 back only to rounding.
    assert_round_trip(model, ours(case), tmp_path)
    unmerged = outputs(model)
    merge(model), merge(model)
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=0)
    unmerge(model), unmerge(model)
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", [c for c in sorted(CASES) if CASES[c][3]])
def test_same_factors_residual_count_and_outputs_as_peft(case):
    model, reference = ours(case), theirs(case)
    assert sum(p.numel() for p in trainable(model).values()) == reference.get_nb_trainable_parameters()[0]
    state = lora_state(model)
    theirs_state = {k: v for k, v in peft.get_peft_model_state_dict(reference).items()}
    assert sorted(state) == sorted(theirs_state)
    for key, tensor in state.items():
        torch.testing.assert_close(tensor, theirs_state[key], atol=1e-5, rtol=1e-5)
    bases = {n.removeprefix(PREFIX).replace("base_layer.", "base."): p for n, p in reference.named_parameters()}
    for name, p in model.named_parameters():
        if ".base." in name:
            torch.testing.assert_close(p, bases[name], atol=1e-5, rtol=0)  # the same residual

    # Exported as LoRA weights on the residual base, and back: equal outputs.
    perturb(model, scale=0.05)
    peft.set_peft_model_state_dict(reference, lora_state(model))
    torch.testing.assert_close(outputs(reference), outputs(model), atol=1e-5, rtol=0)
    back = ours(case)
    back.load_state_dict({k.removeprefix(PREFIX).removesuffix(".weight"): v
                          for k, v in peft.get_peft_model_state_dict(reference).items()}, strict=False)
    assert torch.equal(outputs(back), outputs(model))


def decaying(out=24, inp=16, seed=0):
    """A weight whose singular values fall by 4 one after another: the top r are well separated."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(out, inp, generator=g)).Q
    v = torch.linalg.qr(torch.randn(inp, inp, generator=g)).Q
    return u @ torch.diag(4.0 ** -torch.arange(inp, dtype=torch.float32)) @ v.t()


def test_randomized_svd_is_seeded_and_close_to_the_exact_one():
    weight = decaying()
    exact_b, exact_a = factors(weight, 3, 2.0, LoraInitConfig(Init.PISSA))
    fast = [factors(weight, 3, 2.0, LoraInitConfig(Init.PISSA, niter=4, seed=s)) for s in (0, 0, 1)]
    assert torch.equal(fast[0][0], fast[1][0]) and torch.equal(fast[0][1], fast[1][1])  # same seed: same factors
    assert not torch.equal(fast[0][0], fast[2][0])
    for b, a in fast:  # singular vectors' signs may differ; their product may not
        torch.testing.assert_close(b @ a, exact_b @ exact_a, atol=1e-5, rtol=0)


def test_olora_on_a_4bit_base_requantizes_the_residual_and_pissa_is_refused():
    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 32)
    nf4 = QuantizeConfig("nf4", double_quant=True)
    layer = LoraLinear(copy.deepcopy(plain), r=2, scaling=2.0)
    layer.base = quantized_linear(layer.base, nf4)  # as quantize_model does, after the adapters are built
    w0 = dequantized_weight(layer.base)
    with pytest.raises(LoralabError, match="PiSSA"):
        initialise(layer, LoraInitConfig(Init.PISSA))
    initialise(layer, LoraInitConfig(Init.OLORA))
    assert layer.base.weight.quant_type == "nf4" and layer.base.weight.compress_statistics
    # The base now holds Q(dequant(Q(W0)) - s B A), quantized as the layer was: the residual, requantized.
    residual = torch.nn.Linear(64, 32)
    with torch.no_grad():
        residual.weight.copy_(w0 - layer.delta_weight()), residual.bias.copy_(plain.bias)
    assert torch.equal(dequantized_weight(layer.base), dequantized_weight(quantized_linear(residual, nf4)))
    x = torch.randn(5, 64)
    rebuilt = dequantized_weight(layer.base) + layer.delta_weight()
    torch.testing.assert_close(layer(x), x @ rebuilt.t() + plain.bias, atol=1e-5, rtol=0)


@pytest.mark.parametrize("field,value", [("method", "svd"), ("niter", -1), ("seed", 1.5)])
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(LoralabError, match=f"strategy.lora_init.{field}"):
        LoraInitConfig(**{field: value})
    with pytest.raises(LoralabError, match="strategy.lora_init.niter"):
        LoraInitConfig(Init.OLORA, niter=2)
