"""Head starts: a regression bias at the targets' mean, the class prior, untrained poolers, head_lr, old records."""

import csv
import json
import math

import pytest
import torch
import transformers

from loralab.models import architecture, fingerprint
from loralab.models.head_start import HeadStart, apply_head_start, plan, untrained_modules
from loralab.runs import run
from loralab.runs.config import RunConfig
from loralab.runs.one_run import learning_rates, load_run
from loralab.settings.head import HeadConfig
from loralab.settings.run import identity
from loralab.settings.strategy import Strategy, SubspaceConfig
from loralab.strategies import StrategyConfig, apply_strategy
from loralab.tasks import get_task
from loralab.training import TrainConfig
from loralab.training.optimizer import adamw

WORDS = ("red", "blue", "green", "cold", "warm", "hot", "big", "small")


def tiny_classifier(num_labels: int = 1, seed: int = 0) -> transformers.BertForSequenceClassification:
    """A 2-layer BERT at transformers' own initialisation (initializer_range 0.02), pooler included."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, num_labels=num_labels)
    return transformers.BertForSequenceClassification(config)


@pytest.fixture(scope="module")
def regression_data(tmp_path_factory, minilm_tokenizer):
    """A tiny BERT folder, and 16 texts scored 2.7 or 3.3: far from the head's 0, close to each other."""
    folder = tmp_path_factory.mktemp("head_start")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64)
    transformers.BertForSequenceClassification(config).save_pretrained(folder / "tiny")
    minilm_tokenizer.save_pretrained(folder / "tiny")
    data = folder / "train.csv"
    with open(data, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "score"])
        writer.writerows([(f"{v} {w}", 3.3 if v == "good" else 2.7) for w in WORDS for v in ("good", "bad")])
    return folder / "tiny", data


def _regression_run(out, model, data, strategy=StrategyConfig("lora"), **head):
    training = TrainConfig(lr=0.01, batch_size=4, epochs=10, max_length=16, warmup_ratio=0.0)
    config = RunConfig(train=str(data), valid=str(data), model=str(model), strategy=strategy, training=training,
                       head=HeadConfig(untrained=False, **head), device="cpu")
    return run(config, out, progress=False, log=lambda _: None)


@torch.no_grad()
def _predictions(run_dir, data) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, targets) of a run folder rebuilt by `load_run`, over `data`."""
    loaded = load_run(run_dir, device="cpu")
    task = get_task("regression")
    items = task.encode(task.read(data), loaded.tokenizer, 16)
    batch = task.collate(items, loaded.tokenizer.pad_token_id)
    outputs = torch.tensor(task.outputs(loaded.model, batch, packed=False))[:, 0]
    return outputs, batch["labels"]


def test_regression_collapses_from_zero_and_learns_from_the_mean(tmp_path, regression_data):
    """LoRA on a frozen base: from bias 0 the 40 steps go to climbing towards 3 and every prediction is about
    the same; from the mean the head separates the two scores."""
    model, data = regression_data
    zero = _regression_run(tmp_path / "zero", model, data, regression="zero")
    mean = _regression_run(tmp_path / "mean", model, data)
    assert zero["head_start"]["bias"] is None and zero["config"]["head"]["regression"] == "zero"
    assert mean["head_start"]["bias"] == pytest.approx([3.0]) and mean["head_start"]["bias_from"] == "mean"
    assert mean["config"]["head"]["regression"] == "mean"
    flat, targets = _predictions(tmp_path / "zero", data)
    assert float(flat.std()) < 0.1 * float(targets.std())  # one constant, near enough
    assert abs(float(flat.mean()) - 3.0) > 1.0  # and still far below the targets
    learned, _ = _predictions(tmp_path / "mean", data)
    assert float(learned.std()) > 0.5 * float(targets.std())
    assert float(torch.corrcoef(torch.stack([learned, targets]))[0, 1]) > 0.9
    assert mean["valid"]["mse"] < 0.1 * zero["valid"]["mse"]


def test_a_head_inside_the_subspace_starts_there_again_on_load(tmp_path, regression_data):
    """Under subspace without --train-head the head's start is theta_0, not a saved weight: `load_run` must
    put it back before the subspace, or every prediction would be 3 lower than the run's own scores."""
    model, data = regression_data
    strategy = StrategyConfig(Strategy.SUBSPACE, train_head=False, subspace=SubspaceConfig(dim=50))
    with pytest.warns(UserWarning, match="only through the subspace"):
        record = _regression_run(tmp_path / "sub", model, data, strategy=strategy)
    assert not any(k.startswith("classifier") for k in _saved_names(tmp_path / "sub"))
    with pytest.warns(UserWarning, match="only through the subspace"):
        outputs, targets = _predictions(tmp_path / "sub", data)
    mse = float(((outputs - targets) ** 2).mean())
    assert mse == pytest.approx(record["valid"]["mse"], rel=1e-4, abs=1e-6)
    assert abs(float(outputs.mean()) - 3.0) < 0.5


def _saved_names(run_dir):
    from safetensors import safe_open

    with safe_open(str(run_dir / "weights.safetensors"), "pt") as f:
        return list(f.keys())


def test_a_record_without_head_start_loads_as_before(tmp_path, regression_data):
    """A record from before head starts (no `head_start`, no `head` settings, no head_lr) rebuilds as it ran."""
    model, data = regression_data
    _regression_run(tmp_path / "old", model, data, regression="zero")
    before, _ = _predictions(tmp_path / "old", data)
    path = tmp_path / "old" / "run.json"
    record = json.loads(path.read_text())
    del record["head_start"], record["config"]["head"], record["config"]["training"]["head_lr"]
    path.write_text(json.dumps(record))
    after, _ = _predictions(tmp_path / "old", data)
    assert torch.equal(before, after)
    assert HeadStart.from_record(record) == HeadStart()
    assert RunConfig.from_dict(record["config"]).head == HeadConfig()


def test_class_prior_is_the_log_of_the_class_shares():
    model = tiny_classifier(num_labels=3)
    start = plan(model, HeadConfig(prior=True), "classification", [0, 0, 0, 1, 2, 2, 2, 2])
    assert start.bias == pytest.approx((math.log(3 / 8), math.log(1 / 8), math.log(4 / 8)))
    assert plan(model, HeadConfig(), "classification", [0, 1]).bias is None  # off unless asked for
    apply_head_start(model, start)
    assert model.classifier.bias.tolist() == pytest.approx(list(start.bias))
    assert plan(tiny_classifier(), HeadConfig(), "regression", [1.0, 2.0]).bias == (1.5,)
    assert plan(tiny_classifier(), HeadConfig(regression="zero"), "regression", [1.0, 2.0]).bias is None


def test_an_untrained_pooler_is_found_by_its_weights_and_trains_with_the_head():
    fresh = tiny_classifier()
    assert untrained_modules(fresh) == ("bert.pooler",)  # bias exactly 0, weights at initializer_range
    trained = tiny_classifier()
    with torch.no_grad():
        trained.bert.pooler.dense.bias.add_(0.01)
    assert untrained_modules(trained) == ()
    wide = tiny_classifier()
    with torch.no_grad():
        wide.bert.pooler.dense.weight.mul_(5)  # std 0.1 at initializer_range 0.02: trained, bias or not
    assert untrained_modules(wide) == ()

    before = fingerprint(fresh)
    assert plan(fresh, HeadConfig(untrained=False), "classification", [0, 1]).untrained == ()
    start = plan(fresh, HeadConfig(), "regression", [0.0, 1.0])
    apply_head_start(fresh, start)
    assert architecture(fresh).head == ("classifier", "bert.pooler")
    assert fingerprint(fresh) == before  # the pooler is the checkpoint's own weights
    apply_strategy(fresh, StrategyConfig("lora"))
    assert fresh.bert.pooler.dense.weight.requires_grad and fresh.classifier.weight.requires_grad
    assert not any(p.requires_grad for n, p in fresh.named_parameters()
                   if "lora" not in n and not n.startswith(("classifier", "bert.pooler")))


def test_head_lr_reaches_the_optimizer_group_of_the_head():
    model = tiny_classifier()
    apply_head_start(model, HeadStart(untrained=("bert.pooler",)))
    report = apply_strategy(model, StrategyConfig("lora"))
    assert learning_rates(report.groups, TrainConfig(lr=1e-3), model) == learning_rates(report.groups,
                                                                                          TrainConfig(lr=1e-3))
    groups = learning_rates(report.groups, TrainConfig(lr=1e-3, head_lr=0.05), model)
    head = {id(p) for n, p in model.named_parameters() if n.startswith(("classifier", "bert.pooler"))}
    assert {id(p) for g in groups if g.lr == 0.05 for p in g.params} == head
    optimizer = adamw(model, 1e-3, 0.01, groups)
    rates = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert {i for i, lr in rates.items() if lr == 0.05} == head
    assert {lr for i, lr in rates.items() if i not in head} == {1e-3}


class Killed(BaseException):
    """Stands for kill -9 inside the process."""


def test_an_old_unfinished_run_resumes_as_it_started(tmp_path, regression_data, monkeypatch):
    """A run stopped before head starts existed (no `head_start` in its record) reads as the old way (bias 0,
    nothing detected), not as today's defaults: run again the old way it goes on from bias 0 with a frozen
    pooler, ending bitwise where an unbroken old-style run ends."""
    from safetensors.torch import load_file

    from loralab.runs.during import DuringTraining

    model, data = regression_data
    training = TrainConfig(lr=0.01, batch_size=4, max_steps=6, max_length=16, warmup_ratio=0.0, checkpoint_every=2)
    new = RunConfig(train=str(data), model=str(model), strategy=StrategyConfig("lora"), training=training,
                    device="cpu")
    old = RunConfig.from_flat({**new.flat(), "head.regression": "zero", "head.untrained": False})
    whole = run(old, tmp_path / "whole", progress=False, log=lambda _: None)
    hook = DuringTraining.__call__

    def killed(self, s):
        out = hook(self, s)
        if s.step == 3:
            raise Killed
        return out

    with monkeypatch.context() as m:
        m.setattr(DuringTraining, "__call__", killed)
        with pytest.raises(Killed):
            run(old, tmp_path / "broken", progress=False, log=lambda _: None)
    path = tmp_path / "broken" / "run.json"
    record = json.loads(path.read_text())
    del record["head_start"], record["config"]["head"], record["config"]["training"]["head_lr"]
    path.write_text(json.dumps(record))
    assert identity(record["config"]) == identity(old) != identity(new)  # an old record is the old way, not today's
    again = run(old, tmp_path / "broken", progress=False, log=lambda _: None)
    assert again["resumed_at_steps"] == [2] and again["head_start"] == HeadStart().to_record()
    assert again["loss"] == whole["loss"]
    a, b = load_file(tmp_path / "whole" / "weights.safetensors"), load_file(tmp_path / "broken" / "weights.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
