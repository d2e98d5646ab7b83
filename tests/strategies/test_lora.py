import copy
import math

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from conftest import CLASSIFICATION, SCIENCE, tiny_batch, tiny_model, tiny_text_batch
from run_fixtures import copy_adapters
from loralab.tasks.multiple_choice import collate, encode
from loralab.tasks.multiple_choice import read_questions
from loralab.errors import LoralabError
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig, LoraLinear, lora_layers, merge, merge_lora, unmerge
from loralab.tasks.multiple_choice import choice_logits


def logits(model, batch):
    model.eval()
    with torch.no_grad():
        return choice_logits(model, batch)


def randomise_adapters(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


@pytest.mark.parametrize("rslora", [False, True])
def test_merged_equals_unmerged_and_merge_is_idempotent(rslora):
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(Strategy.LORA, LoraConfig(r=4, alpha=16, rslora=rslora,
                                                                   targets=("query", "key", "value", "attention_output"))))
    randomise_adapters(model)
    batch = tiny_batch()
    unmerged = logits(model, batch)
    original = {n: p.clone() for n, p in model.state_dict().items()}
    merge(model)
    merge(model)  # a second merge must not add the update twice
    torch.testing.assert_close(logits(model, batch), unmerged, atol=1e-5, rtol=0)
    unmerge(model)
    unmerge(model)
    torch.testing.assert_close(logits(model, batch), unmerged, atol=1e-5, rtol=0)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, original[name], atol=1e-6, rtol=0)


def test_eval_does_not_merge():
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(Strategy.LORA))
    model.eval()
    assert not any(layer.merged for layer in lora_layers(model))


def linear(kind: str, fan_in: int, fan_out: int) -> torch.nn.Module:
    """An nn.Linear, or GPT-2's Conv1D, which stores the same weight transposed, (in, out)."""
    if kind == "linear":
        return torch.nn.Linear(fan_in, fan_out)
    layer = Conv1D(fan_out, fan_in)
    with torch.no_grad():
        layer.bias.normal_()  # Conv1D starts its bias at zero: a test must see it added
    return layer


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_layer_formula_and_init(kind):
    torch.manual_seed(0)
    base = linear(kind, 6, 5)
    layer = LoraLinear(base, r=2, scaling=4.0)
    assert torch.equal(layer.lora_B, torch.zeros(5, 2)) and layer.lora_A.shape == (2, 6)
    bound = 1 / math.sqrt(6)  # kaiming_uniform with a=sqrt(5) on fan_in 6
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.std() > 0
    assert isinstance(layer.dropout, torch.nn.Identity)  # no copy of x when dropout is off
    x = torch.randn(3, 6)
    assert torch.equal(layer(x), base(x))  # B = 0: the base's output, bit for bit
    with torch.no_grad():
        layer.lora_B.normal_()
    expected = base(x) + 4.0 * x @ layer.lora_A.t() @ layer.lora_B.t()
    torch.testing.assert_close(layer(x), expected)
    assert not base.weight.requires_grad and layer.lora_A.requires_grad


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_both_forward_paths_give_the_formula_and_its_gradients(kind):
    torch.manual_seed(0)
    base = linear(kind, 6, 5)
    # dropout 1e-9 keeps every input but takes the path that adds the update separately
    fused, separate = LoraLinear(base, r=2, scaling=2.0), LoraLinear(base, r=2, scaling=2.0, dropout=1e-9).train()
    with torch.no_grad():
        fused.lora_B.normal_()
        separate.lora_A.copy_(fused.lora_A), separate.lora_B.copy_(fused.lora_B)
    x = torch.randn(2, 3, 6, requires_grad=True)
    A, B = fused.lora_A.detach().requires_grad_(), fused.lora_B.detach().requires_grad_()
    expected = base(x) + 2.0 * x @ A.t() @ B.t()  # (2, 3, 5)
    grad = torch.randn(expected.shape)
    wanted = torch.autograd.grad(expected, (x, A, B), grad)
    for layer in (fused, separate):
        out = layer(x)
        torch.testing.assert_close(out, expected)
        for got, want in zip(torch.autograd.grad(out, (x, layer.lora_A, layer.lora_B), grad), wanted):
            torch.testing.assert_close(got, want)


def test_conv1d_merges_into_its_own_layout():
    torch.manual_seed(0)
    base = linear("conv1d", 6, 5)
    model = torch.nn.Sequential(LoraLinear(base, r=2, scaling=2.0))
    with torch.no_grad():
        model[0].lora_B.normal_()
    x = torch.randn(4, 6)
    unmerged = model(x)
    expected_weight = base.weight.detach() + model[0].delta_weight().t()  # (in, out), as Conv1D keeps it
    merge_lora(model)
    assert type(model[0]) is Conv1D
    torch.testing.assert_close(model[0].weight, expected_weight)
    torch.testing.assert_close(model(x), unmerged)


def test_scaling_is_alpha_over_r_or_over_sqrt_r():
    assert LoraConfig(r=16, alpha=32).scaling == 2.0
    assert LoraConfig(r=16, alpha=32, rslora=True).scaling == 8.0


@pytest.mark.parametrize("field,value", [("r", 0), ("alpha", -1.0), ("dropout", 1.0), ("targets", ())])
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(LoralabError, match=field if field != "targets" else "target"):
        LoraConfig(**{field: value})


@pytest.mark.filterwarnings("ignore:the task head")
@pytest.mark.parametrize("train_head", [True, False])
def test_same_logits_and_trainable_count_as_peft_on_minilm(train_head):
    peft = pytest.importorskip("peft")
    from loralab.models import load_model, load_tokenizer

    base = load_model("minilm", seed=0)
    ours = copy.deepcopy(base)
    config = LoraConfig(r=8, alpha=32, dropout=0.1, targets=("query", "value"))
    report = apply_strategy(ours, StrategyConfig(Strategy.LORA, config, train_head=train_head))
    randomise_adapters(ours)

    theirs = peft.get_peft_model(
        base,
        peft.LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1, target_modules=["query", "value"],
                        modules_to_save=["classifier"] if train_head else None),
    )
    copy_adapters(ours, theirs)
    trainable_peft = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert report.trainable_params == trainable_peft

    tokenizer = load_tokenizer("minilm")
    batch = collate(encode(read_questions(SCIENCE / "valid.csv", limit=4), tokenizer, 128), tokenizer.pad_token_id)
    torch.testing.assert_close(logits(ours, batch), logits(theirs, batch), atol=1e-5, rtol=0)
    # and the adapters do change the output, so the comparison above is not vacuous
    assert not torch.allclose(logits(ours, batch), logits(load_model("minilm", seed=0), batch), atol=1e-3)


def test_same_logits_and_trainable_count_as_peft_on_gpt2_conv1d():
    peft = pytest.importorskip("peft")
    base = tiny_model("gpt2", head=CLASSIFICATION)
    ours = copy.deepcopy(base)
    report = apply_strategy(ours, StrategyConfig(Strategy.LORA, LoraConfig(r=4, alpha=8, targets=("all-linear",))))
    assert {type(layer.base).__name__ for layer in lora_layers(ours)} == {"Conv1D"}
    randomise_adapters(ours)
    theirs = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"],
                                                       fan_in_fan_out=True, modules_to_save=["score"]))
    copy_adapters(ours, theirs)
    assert report.trainable_params == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    batch = {k: v for k, v in tiny_text_batch().items() if k != "labels"}
    ours.eval(), theirs.eval()
    with torch.no_grad():
        expected = theirs(**batch).logits
        torch.testing.assert_close(ours(**batch).logits, expected, atol=1e-5, rtol=0)
        with theirs.disable_adapter():
            assert (theirs(**batch).logits - expected).abs().max() > 1e-3  # the adapters matter
