import peft
import pytest
import torch

from adapter_cases import adapted, assert_round_trip, base_model, outputs, perturb, targets, trainable
from loralab.errors import LoralabError
from loralab.strategies.vera import (VeraConfig, apply_vera, load_peft_state, merge, merge_vera, peft_state, unmerge,
                                     vera_layers)

CASES = {
    "bert-qv": ("bert", VeraConfig(r=8)),
    "bert-attention-seed-3": ("bert", VeraConfig(r=4, seed=3, d_initial=0.5,
                                                 targets=("query", "key", "value", "attention_output"))),
    # in 32, out 32 and 64: B is drawn at the largest shapes and sliced
    "llama-all-linear": ("llama", VeraConfig(r=4, targets=("all-linear",))),
}
PREFIX = "base_model.model."


def ours(case):
    model_type, config = CASES[case]
    return adapted(model_type, apply_vera, config, config.targets)


def theirs(case):
    model_type, config = CASES[case]
    base = base_model(model_type)
    return peft.get_peft_model(base, peft.VeraConfig(r=config.r, target_modules=targets(base, config.targets),
                                                     projection_prng_key=config.seed, d_initial=config.d_initial,
                                                     save_projection=False))


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_projections_init_count_and_outputs_as_peft_and_back(case):
    model, reference = ours(case), theirs(case)
    projections = vera_layers(model)[0].projections
    assert all(layer.projections is projections for layer in vera_layers(model))  # one shared pair
    assert torch.equal(projections.vera_A, reference.base_model.vera_A["default"])
    assert torch.equal(projections.vera_B, reference.base_model.vera_B["default"])
    theirs_state = {k.removeprefix(PREFIX): v for k, v in peft.get_peft_model_state_dict(reference).items()}
    assert sorted(theirs_state) == sorted(peft_state(model))
    for key, tensor in peft_state(model).items():
        assert torch.equal(tensor, theirs_state[key]), key  # peft's initial b and d
    assert sum(p.numel() for p in trainable(model).values()) == reference.get_nb_trainable_parameters()[0]

    perturb(model)
    expected = outputs(model)
    assert (expected - outputs(base_model(CASES[case][0]))).abs().max() > 1e-4  # not vacuous
    peft.set_peft_model_state_dict(reference, {PREFIX + k: v for k, v in peft_state(model).items()})
    torch.testing.assert_close(outputs(reference), expected, atol=1e-5, rtol=0)
    back = ours(case)
    load_peft_state(back, {k.removeprefix(PREFIX): v for k, v in peft.get_peft_model_state_dict(reference).items()})
    assert torch.equal(outputs(back), expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_adapted_equals_base_and_merged_equals_unmerged(case):
    model = ours(case)
    assert torch.equal(outputs(model), outputs(base_model(CASES[case][0])))  # b = 0
    perturb(model)
    unmerged = outputs(model)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    merge(model), merge(model)
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=0)
    unmerge(model), unmerge(model)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, before[name], atol=1e-6, rtol=0)
    merge_vera(model)
    assert not vera_layers(model)
    torch.testing.assert_close(outputs(model), unmerged, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_saved_state_holds_the_vectors_only_and_loads_bitwise(case, tmp_path):
    model = ours(case)
    assert not any("vera_A" in k or "vera_B" in k for k in model.state_dict())  # rebuilt from the seed
    perturb(model)
    assert_round_trip(model, ours(case), tmp_path)


def test_another_seed_draws_other_projections():
    model_type, config = CASES["bert-qv"]
    other = adapted(model_type, apply_vera, VeraConfig(r=8, seed=1), config.targets)
    assert not torch.equal(vera_layers(other)[0].projections.vera_A, vera_layers(ours("bert-qv"))[0].projections.vera_A)


@pytest.mark.parametrize("field,value", [("r", 0), ("seed", -1), ("d_initial", float("nan")), ("dropout", 1.0),
                                         ("targets", ())])
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(LoralabError, match=f"strategy.vera.{field}"):
        VeraConfig(**{field: value})
