import peft
import pytest
import torch

from conftest import CLASSIFICATION, TINY, tiny_model
from adapter_cases import assert_round_trip, base_model, outputs, perturb, trainable
from loralab.errors import LoralabError
from loralab.models import architecture
from loralab.strategies.ia3 import (IA3Config, apply_ia3, ffn_output_modules, ia3_layers, ia3_targets, load_peft_state, merge, merge_ia3,
                                    peft_state, unmerge)

# (model type, IA3 settings, the layers it must pick: output-scaled, input-scaled, per block)
CASES = {
    "bert": ("bert", IA3Config(), ({"attention.self.key", "attention.self.value"}, {"output.dense"})),
    "llama": ("llama", IA3Config(), ({"self_attn.k_proj", "self_attn.v_proj"}, {"mlp.down_proj"})),
    "llama-up-proj-as-input": ("llama", IA3Config(targets=("value",), feedforward=("ffn_output", "up_proj")),
                               ({"self_attn.v_proj"}, {"mlp.down_proj", "mlp.up_proj"})),
    "bert-outputs-only": ("bert", IA3Config(targets=("key", "value", "attention_output"), feedforward=()),
                          ({"attention.self.key", "attention.self.value", "attention.output.dense"}, set())),
}
PREFIX = "base_model.model."


def ours(case):
    model = base_model(CASES[case][0])
    model.requires_grad_(False)
    apply_ia3(model, CASES[case][1])
    return model


def theirs(case):
    base = base_model(CASES[case][0])
    scaled, feedforward = ia3_targets(base, CASES[case][1])
    return peft.get_peft_model(base, peft.IA3Config(target_modules=scaled + feedforward,
                                                    feedforward_modules=feedforward))


def in_block(name):
    """`bert.encoder.layer.0.attention.self.key` -> `attention.self.key`: the name within its block."""
    parts = name.split(".")
    index = next(i for i, p in enumerate(parts) if p.isdigit())
    return ".".join(parts[index + 1:])


@pytest.mark.parametrize("case", sorted(CASES))
def test_picks_keys_values_and_the_ffn_output(case):
    scaled, feedforward = ia3_targets(base_model(CASES[case][0]), CASES[case][1])
    want_scaled, want_ff = CASES[case][2]
    assert {in_block(n) for n in scaled} == want_scaled and {in_block(n) for n in feedforward} == want_ff
    assert len(scaled) == 2 * len(want_scaled)  # both blocks of the tiny model


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_trainable_count_and_outputs_as_peft_and_back(case):
    model, reference = ours(case), theirs(case)
    assert sum(p.numel() for p in trainable(model).values()) == reference.get_nb_trainable_parameters()[0]
    perturb(model)
    expected = outputs(model)
    assert (expected - outputs(base_model(CASES[case][0]))).abs().max() > 1e-4  # not vacuous: 10 times the tolerance
    peft.set_peft_model_state_dict(reference, {PREFIX + k: v for k, v in peft_state(model).items()})
    torch.testing.assert_close(outputs(reference), expected, atol=1e-5, rtol=0)
    back = ours(case)
    load_peft_state(back, {k.removeprefix(PREFIX): v for k, v in peft.get_peft_model_state_dict(reference).items()})
    assert torch.equal(outputs(back), expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_adapted_equals_base_bitwise_before_training(case):
    assert all(torch.equal(layer.scale, torch.ones_like(layer.scale)) for layer in ia3_layers(ours(case)))
    assert torch.equal(outputs(ours(case)), outputs(base_model(CASES[case][0])))  # x * 1 is x


@pytest.mark.parametrize("case", sorted(CASES))
def test_merged_equals_unmerged_and_save_load_is_bitwise(case, tmp_path):
    model = ours(case)
    perturb(model)
    assert_round_trip(model, ours(case), tmp_path)
    unmerged = outputs(model)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    merge(model), merge(model)
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=0)
    unmerge(model), unmerge(model)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, before[name], atol=1e-6, rtol=1e-6)
    merge_ia3(model)
    assert not ia3_layers(model)
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=0)


def test_invalid_config_names_the_field():
    with pytest.raises(LoralabError, match="strategy.ia3.targets"):
        IA3Config(targets=(), feedforward=())
    with pytest.raises(LoralabError, match="strategy.ia3.feedforward"):
        IA3Config(feedforward=("",))


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_every_architecture_names_one_ffn_output_per_block(model_type):
    head = CLASSIFICATION if CLASSIFICATION in TINY[model_type][2] else None
    model = tiny_model(model_type, head=head) if head else tiny_model(model_type)
    found = ffn_output_modules(model, architecture(model))
    assert len(found) == 2, found  # the tiny models have two blocks
    assert not any("attention" in name or "attn" in name for name in found)
