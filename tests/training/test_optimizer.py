"""AdamW over a strategy's parameter groups, and the learning-rate schedule."""

import pytest

from conftest import tiny_model
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.subspace import SubspaceConfig, subspace_of
from loralab.training.optimizer import adamw, linear_schedule


def test_linear_warmup_then_decay():
    factor = linear_schedule(total_steps=10, warmup_steps=2)
    assert [round(factor(s), 3) for s in range(10)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]


def test_optimizer_state_only_for_what_trains():
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(Strategy.LORA))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = adamw(model, 2e-5, 0.01)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == trainable


@pytest.mark.parametrize("theta_lr", [None, 0.5])
def test_a_group_trains_in_its_own_optimizer_group_only_with_its_own_lr(theta_lr):
    model = tiny_model("bert")
    report = apply_strategy(model, StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(dim=50, projection="said")))
    theta = subspace_of(model).theta
    trainable = [p for p in model.parameters() if p.requires_grad]  # theta, the said scales, the head
    matrices, vectors = [p for p in trainable if p.dim() >= 2], [p for p in trainable if p.dim() < 2]
    expected = [(matrices, 0.01, 1e-3), (vectors, 0.0, 1e-3)]  # in the model's order, as before groups existed
    if theta_lr is not None:
        expected = [(matrices, 0.01, 1e-3), ([p for p in vectors if p is not theta], 0.0, 1e-3), ([theta], 0.0, theta_lr)]
    groups = tuple(g._replace(lr=theta_lr) if g.role == "theta" else g for g in report.groups)
    assert [g.role for g in report.groups if any(p is theta for p in g.params)] == ["theta"]
    optimizer_groups = adamw(model, 1e-3, 0.01, groups).param_groups
    assert [([id(p) for p in g["params"]], g["weight_decay"], g["lr"]) for g in optimizer_groups] == \
        [([id(p) for p in params], decay, lr) for params, decay, lr in expected]
    # Without the strategy's groups the loop cannot tell theta from any other vector.
    assert len(adamw(model, 1e-3, 0.01).param_groups) == 2


def test_cpu_adamw_is_fused_only_when_asked_and_bf16_training_asks(monkeypatch):
    import loralab.training.loop as loop
    from loralab.tasks.multiple_choice import TASK as MC
    from loralab.training import TrainConfig, train
    from run_fixtures import random_questions

    model = tiny_model("bert")
    assert not adamw(model, 1e-3, 0.01).defaults["fused"]  # the per-tensor loop: fp32 records stay bit-identical
    assert adamw(model, 1e-3, 0.01, fused=True).defaults["fused"]
    asked = []
    monkeypatch.setattr(loop, "adamw", lambda *a, **k: asked.append(k["fused"]) or adamw(*a, **k))
    for precision in ("fp32", "bf16"):
        config = TrainConfig(batch_size=4, max_steps=1, precision=precision)
        train(tiny_model("bert"), random_questions(4), config, task=MC, pad_id=0, progress=False)
    assert asked == [False, True]
