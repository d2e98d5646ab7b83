"""bf16 mixed precision: compute in bf16, keep fp32 master weights, grads and optimizer state."""

import warnings

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


def test_precision_is_a_run_setting_an_experiment_key_and_recorded(tmp_path):
    from pathlib import Path

    from loralab.runs.config import RunConfig
    from loralab.sweeps.experiment import load_experiment

    experiment = tmp_path / "bf16.yaml"
    experiment.write_text("base: {train: train.csv}\nruns:\n  - {name: a, strategy: lora, precision: bf16}\n"
                          "  - {name: b, strategy: lora, precision: fp16}\n")
    with pytest.raises(LoralabError, match="precision"):
        load_experiment(experiment)
    experiment.write_text("base: {train: train.csv}\nruns:\n  - {name: a, strategy: lora, precision: bf16}\n")
    (run,) = load_experiment(experiment).runs
    assert run.config.training.precision == "bf16" and "precision-bf16" in run.folder
    record = run.config.to_dict()
    assert record["training"]["precision"] == "bf16" and run.config.flat()["training.precision"] == "bf16"
    assert RunConfig.from_dict(record) == run.config
    old = dict(record, training={k: v for k, v in record["training"].items() if k != "precision"})
    assert RunConfig.from_dict(old).training.precision == "fp32"  # records from before precision existed
    assert Path(run.config.train).name == "train.csv"


@pytest.mark.slow
def test_cli_trains_in_bf16_and_records_it(tmp_path, science_exam):
    import json
    import subprocess
    import sys

    from loralab.models import load_tokenizer
    from run_fixtures import save_tiny_bert

    model = save_tiny_bert(tmp_path / "tiny", load_tokenizer("minilm"))
    out = tmp_path / "run"
    args = [sys.executable, "-m", "loralab.cli", "train", "--train", science_exam / "train.csv", "--valid",
            science_exam / "valid.csv", "--train-limit", 8, "--valid-limit", 4, "--model", model, "--strategy", "lora",
            "--max-length", 32, "--batch-size", 4, "--precision", "bf16", "--threads", 1, "--quiet", "--out", out]
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "completed" and record["hyperparameters"]["training.precision"] == "bf16"
    assert record["config"]["training"]["precision"] == "bf16" and 0 <= record["valid"]["map@3"] <= 1


def test_bf16_on_a_cpu_without_native_bf16_warns_once_per_run(monkeypatch):
    """An AMD EPYC with AVX2 only multiplied bf16 at 0.64 GFLOP/s against fp32's 39: a bf16 run there says so."""
    from loralab.training import precision

    model = tiny_model("bert")
    apply_strategy(model, StrategyConfig(Strategy.LORA))
    config = TrainConfig(lr=1e-3, batch_size=4, max_steps=2, warmup_ratio=0.0, precision="bf16")
    monkeypatch.setattr(precision, "_cpu_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"--precision bf16: this CPU \(.+\) has no native bf16 products") as seen:
        train(model, items(), config, task=MC, pad_id=0, progress=False)
    assert sum("no native bf16" in str(w.message) for w in seen) == 1
    monkeypatch.setattr(precision, "_cpu_bf16", lambda: True)
    for each in (config, TrainConfig(lr=1e-3, batch_size=4, max_steps=2, warmup_ratio=0.0)):  # native, or fp32
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            precision.warn_if_emulated(each.precision, "cpu")
    monkeypatch.setattr(precision, "_cpu_bf16", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        precision.warn_if_emulated("fp32", "cpu")  # fp32 never warns
