import peft
import pytest
import torch
from peft.optimizers import create_loraplus_optimizer

from adapter_cases import adapted, base_model, perturb, targets, trainable
from loralab.errors import LoralabError
from loralab.strategies.dora import DoraConfig, apply_dora
from loralab.strategies.lora import LoraConfig, apply_lora, lora_layers
from loralab.strategies.lora_plus import LoraPlusConfig, lora_plus_groups

# (model type, apply, adapter config, LoRA+ ratio)
CASES = {
    "bert-lora-qv": ("bert", apply_lora, LoraConfig(r=4, alpha=8.0), 16.0),
    "llama-lora-all-linear": ("llama", apply_lora, LoraConfig(r=2, alpha=4.0, targets=("all-linear",)), 4.0),
    "bert-dora-qv": ("bert", apply_dora, DoraConfig(LoraConfig(r=2, alpha=4.0)), 16.0),
}


def build(case):
    model_type, apply, config, ratio = CASES[case]
    lora = config.lora if isinstance(config, DoraConfig) else config
    return adapted(model_type, apply, config, lora.targets), LoraPlusConfig(ratio)


@pytest.mark.parametrize("case", sorted(CASES))
def test_groups_split_what_trains_into_a_b_and_the_rest(case):
    model, config = build(case)
    groups = lora_plus_groups(model, config)
    ids = [id(p) for params, _ in groups for p in params]
    assert sorted(ids) == sorted(id(p) for p in trainable(model).values())  # each exactly once
    layers = lora_layers(model)
    rates = {id(p): m for params, m in groups for p in params}
    assert all(rates[id(layer.lora_A)] == 1.0 and rates[id(layer.lora_B)] == config.ratio for layer in layers)
    others = {id(p) for p in trainable(model).values()} - {id(l.lora_A) for l in layers} - {id(l.lora_B) for l in layers}
    assert all(rates[i] == 1.0 for i in others)
    assert bool(others) == case.startswith("bert-dora")  # the DoRA magnitudes learn at A's rate


@pytest.mark.parametrize("case", [c for c in sorted(CASES) if "-lora-" in c])
def test_same_updates_as_peft_loraplus_optimizer(case):
    model, config = build(case)
    model_type, _, lora, _ = CASES[case]
    perturb(model)
    base = base_model(model_type)
    reference = peft.get_peft_model(base, peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha,
                                                          target_modules=targets(base, lora.targets)))
    theirs = dict(reference.named_parameters())
    pairs = []  # (ours, theirs) per adapter tensor
    for name, p in trainable(model).items():
        module, _, leaf = name.rpartition(".")
        pairs.append((p, theirs[f"base_model.model.{module}.{leaf}.default.weight"]))
    with torch.no_grad():
        for p, q in pairs:
            q.copy_(p)
    lr = 1e-2
    ours_opt = torch.optim.AdamW([{"params": params, "lr": lr * m} for params, m in lora_plus_groups(model, config)],
                                 lr=lr, weight_decay=0.0)
    theirs_opt = create_loraplus_optimizer(reference, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=config.ratio)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in pairs:
            grad = torch.randn(p.shape, generator=g)
            p.grad, q.grad = grad.clone(), grad.clone()
        ours_opt.step(), theirs_opt.step()
    for p, q in pairs:
        torch.testing.assert_close(p, q, atol=0, rtol=0)


def test_b_moves_ratio_times_as_far_as_a_under_sgd():
    model, config = build("bert-lora-qv")
    layer = lora_layers(model)[0]
    opt = torch.optim.SGD([{"params": params, "lr": 0.1 * m} for params, m in lora_plus_groups(model, config)], lr=0.1)
    before_a, before_b = layer.lora_A.detach().clone(), layer.lora_B.detach().clone()
    for p in trainable(model).values():
        p.grad = torch.ones_like(p)
    opt.step()
    torch.testing.assert_close(before_a - layer.lora_A, torch.full_like(before_a, 0.1))
    torch.testing.assert_close(before_b - layer.lora_B, torch.full_like(before_b, 0.1 * 16))


@pytest.mark.parametrize("ratio", [0, -1.0, float("inf"), "16"])
def test_invalid_ratio_names_the_field(ratio):
    with pytest.raises(LoralabError, match="strategy.lora_plus.ratio"):
        LoraPlusConfig(ratio)
