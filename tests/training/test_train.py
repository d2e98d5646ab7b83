import math

import pytest
import torch

from conftest import tiny_model
from run_fixtures import random_questions as items
from loralab.tasks.multiple_choice import TASK as MC, EncodedQuestion
from loralab.errors import LoralabError
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.training import TrainConfig, evaluate, train


def trained(config, strategy=Strategy.FULL):
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(strategy))
    return model, train(model, items(), config, task=MC, pad_id=0, progress=False)


def test_same_seed_same_run_bitwise():
    config = TrainConfig(lr=1e-3, batch_size=4, epochs=2, seed=7)
    (a, ra), (b, rb) = trained(config), trained(config)
    assert ra.losses == rb.losses and ra.steps == 6
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_different_seed_different_order():
    assert trained(TrainConfig(lr=1e-3, batch_size=4, seed=1))[1].losses != \
        trained(TrainConfig(lr=1e-3, batch_size=4, seed=2))[1].losses


def test_gradient_accumulation_counts_optimizer_steps():
    _, result = trained(TrainConfig(lr=1e-3, batch_size=2, grad_accum=3, epochs=1))
    assert result.steps == 2 and len(result.losses) == 2 and len(result.step_seconds) == 2
    _, result = trained(TrainConfig(lr=1e-3, batch_size=2, max_steps=1))
    assert result.steps == 1


def test_training_lowers_the_loss_and_records_costs():
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(Strategy.FULL))
    data = items(8)
    before = evaluate(model, data, task=MC, pad_id=0)
    result = train(model, data, TrainConfig(lr=3e-3, batch_size=4, epochs=15, warmup_ratio=0.0), task=MC, pad_id=0, progress=False)
    assert result.losses[-1] < result.losses[0]
    assert evaluate(model, data, task=MC, pad_id=0)["accuracy"] > before["accuracy"]
    assert result.tokens == 15 * sum(item.num_tokens for item in data)
    assert result.peak_memory_mb > 0 and result.tokens_per_second > 0


def test_non_finite_loss_is_recorded_as_diverged():
    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(Strategy.FULL))
    with torch.no_grad():
        model.classifier.weight.fill_(float("inf"))
    result = train(model, items(), TrainConfig(batch_size=4), task=MC, pad_id=0, progress=False)
    assert result.status == "diverged" and result.diverged_at_step == 1 and result.steps == 0


@pytest.mark.parametrize("field,value", [("lr", 0.0), ("batch_size", 0), ("warmup_ratio", 1.0), ("max_length", 2)])
def test_invalid_training_setting_names_the_field(field, value):
    with pytest.raises(LoralabError, match=field):
        TrainConfig(**{field: value})


def test_runaway_loss_rule():
    from loralab.training import runaway_loss

    config = TrainConfig(divergence_factor=10.0, divergence_window=3)
    assert runaway_loss([1.0, 50.0, 50.0], config) is None  # not yet a window of 3 after the first step
    assert "above 10 x the first step's 1" in runaway_loss([1.0, 50.0, 50.0, 50.0], config)
    assert runaway_loss([1.0, 2.0, 500.0, 2.0, 2.0], config) is None  # a spike that came back down
    assert runaway_loss([1.0, 50.0, 5.0, 50.0, 50.0], config)  # a dip inside a loss that stays up
    assert runaway_loss([1.0, 50.0], config, finished=True)  # a short run that only ever went up
    assert runaway_loss([1.0, 9.0, 9.0, 9.0], config) is None  # below the factor
    assert runaway_loss([1.0, 50.0, 50.0, 50.0], TrainConfig(divergence_factor=0.0)) is None  # rule off


def test_a_loss_that_explodes_without_reaching_inf_is_diverged():
    config = TrainConfig(lr=10.0, batch_size=4, epochs=5, warmup_ratio=0.0, divergence_window=3)
    model, result = trained(config)
    assert all(math.isfinite(x) for x in result.losses)  # never NaN or inf ...
    assert result.status == "diverged" and "is above 10 x the first step's" in result.diverged_reason  # ... yet diverged
    calm = TrainConfig(lr=1e-3, batch_size=4, epochs=5, warmup_ratio=0.0, divergence_window=3)
    assert trained(calm)[1].status == "completed"


def test_a_training_sample_is_drawn_at_random_in_file_order():
    from loralab.runs import sample

    examples = list(range(100))
    drawn = sample(examples, 10, seed=3)
    assert len(drawn) == 10 and drawn == sorted(drawn) and drawn != examples[:10]
    assert drawn == sample(examples, 10, seed=3) and drawn != sample(examples, 10, seed=4)
    assert sample(examples, 10, seed=None) == examples[:10] and sample(examples, 500, seed=3) == examples
