"""bf16 mixed precision: compute in bf16, keep fp32 master weights, grads and optimizer state."""

import pytest
import torch

from conftest import tiny_model
from run_fixtures import random_questions as items
from loralab.errors import LoralabError
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.subspace import SubspaceConfig
from loralab.tasks.multiple_choice import TASK as MC
from loralab.training import TrainConfig, score, train
from loralab.training.precision import autocast

STRATEGIES = [StrategyConfig(Strategy.FULL), StrategyConfig(Strategy.ATTENTION), StrategyConfig(Strategy.QV),
              StrategyConfig(Strategy.LORA),
              StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(dim=40, projection="fastfood"))]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.strategy.value)
def test_bf16_trains_fp32_master_weights_of_every_strategy(strategy):
    model = tiny_model("bert")
    apply_strategy(model, strategy)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = TrainConfig(lr=1e-2, batch_size=4, max_steps=2, warmup_ratio=0.0, precision="bf16")
    result = train(model, items(), config, task=MC, pad_id=0, progress=False)
    assert result.status == "completed" and result.steps == 2
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32, name  # master weights never leave fp32
        assert torch.equal(p, before[name]) != p.requires_grad, name  # what trains moved, nothing else did


def test_bf16_forward_computes_in_bf16_and_grads_arrive_in_fp32():
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(Strategy.LORA))
    seen = []
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    batch = MC.collate(items()[:4], pad_id=0)
    with autocast("bf16", "cpu"):
        loss = MC.loss(model.train(), batch, True)
    loss.backward()
    assert seen == [torch.bfloat16] and loss.dtype == torch.float32
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 for g in grads)


def test_bf16_loss_and_scores_are_the_fp32_ones_within_bf16_rounding():
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(Strategy.LORA))
    data = items(8)
    batch = MC.collate(data, pad_id=0)
    with torch.no_grad():
        full = MC.loss(model.eval(), batch, True)
        with autocast("bf16", "cpu"):
            half = MC.loss(model, batch, True)
    assert abs(full.item() - half.item()) < 0.02 and full.item() != half.item()  # bf16 did compute, and close
    fp32, bf16 = (torch.tensor(score(model, data, task=MC, pad_id=0, precision=p)) for p in ("fp32", "bf16"))
    assert not torch.equal(fp32, bf16) and torch.allclose(fp32, bf16, atol=0.05)


def test_precision_is_validated_by_name():
    with pytest.raises(LoralabError, match="training.precision.*fp16"):
        TrainConfig(precision="fp16")
