"""The subspace strategy as a run: train, save, reload bitwise, merge, and the CLI flags."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMultipleChoice

from loralab.cli import main
from loralab.runs.config import RunConfig
from loralab.runs.merge import merge_run
from loralab.runs import load_run
from loralab.strategies import Strategy, StrategyConfig
from loralab.strategies.subspace import SubspaceConfig
from run_fixtures import logits, question_batch, save_tiny_bert, short_run


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_tokenizer)


@pytest.fixture(scope="module", params=["fastfood", "said"])
def subspace_run(request, tmp_path_factory, base_folder):
    folder = tmp_path_factory.mktemp(f"subspace-{request.param}")
    strategy = StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(dim=64, projection=request.param, seed=3))
    # A large step: P's columns have unit length over ~1M weights, so small thetas barely show.
    record = short_run(folder, base_folder, strategy, lr=2.0, steps=2)
    return folder, record


def test_record_counts_d_plus_the_head(subspace_run):
    folder, record = subspace_run
    assert record["status"] == "completed" and record["strategy"] == "subspace"
    head = 32 + 1  # classifier weight (1 x hidden 32) and bias
    assert record["trainable_params"] == 64 + head
    plain = AutoModelForMultipleChoice.from_pretrained(RunConfig.from_dict(record["config"]).model)
    assert record["total_params"] == sum(p.numel() for p in plain.parameters())
    assert record["hyperparameters"]["strategy.subspace.dim"] == 64


def test_checkpoint_holds_only_theta_and_the_head(subspace_run):
    folder, record = subspace_run
    tensors = load_file(str(folder / record["weights"]))
    sizes = {name.rsplit(".", 1)[-1] if "subspace" in name else name: t.numel() for name, t in tensors.items()}
    said = record["config"]["strategy"]["subspace"]["projection"] == "said"
    expected_theta = 64 - sizes.get("scales", 0)
    assert sizes["theta"] == expected_theta and (("scales" in sizes) == said)
    assert sizes["classifier.weight"] == 32 and sizes["classifier.bias"] == 1
    assert sum(sizes.values()) == 64 + 33


def test_reloaded_run_is_bitwise_reproducible_and_trained(subspace_run, base_folder, minilm_tokenizer):
    folder, _ = subspace_run
    batch = question_batch(minilm_tokenizer)
    first, second = logits(load_run(folder).model, batch), logits(load_run(folder).model, batch)
    assert torch.equal(first, second)
    base = logits(AutoModelForMultipleChoice.from_pretrained(base_folder), batch)
    assert (first - base).abs().max() > 1e-3, "training left the model unchanged; the test would prove nothing"


def test_merged_subspace_run_loads_in_plain_transformers(subspace_run, tmp_path, minilm_tokenizer):
    folder, _ = subspace_run
    batch = question_batch(minilm_tokenizer)
    adapted = logits(load_run(folder).model, batch)
    merged = AutoModelForMultipleChoice.from_pretrained(merge_run(folder, tmp_path / "merged"))
    torch.testing.assert_close(logits(merged, batch), adapted, atol=1e-5, rtol=0)


def test_theta_lr_reaches_theta_alone(tmp_path, base_folder):
    strategy = StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(dim=64, seed=3))
    short_run(tmp_path / "lr", base_folder, strategy, lr=0.5, steps=1)
    short_run(tmp_path / "theta-lr", base_folder, strategy, lr=0.5, steps=1, theta_lr=1.0)
    shared, own = (load_file(str(tmp_path / name / "weights.safetensors")) for name in ("lr", "theta-lr"))
    theta = next(name for name in shared if name.endswith(".theta"))
    # One Adam step from theta = 0 is -lr times about the gradient's sign: twice the lr, twice the step.
    assert shared[theta].abs().min() > 0.4
    torch.testing.assert_close(own[theta], 2 * shared[theta])
    assert all(torch.equal(own[name], shared[name]) for name in shared if name != theta)  # the head keeps lr


def test_export_peft_refuses_a_subspace_run(subspace_run, tmp_path, capsys):
    folder, _ = subspace_run
    assert main(["export-peft", "--run", str(folder), "--out", str(tmp_path / "adapter")]) == 2
    assert "LoRA" in capsys.readouterr().err


def test_cli_trains_a_subspace_run(tmp_path, base_folder, science_exam, capsys):
    code = main(["train", "--train", str(science_exam / "train.csv"), "--train-limit", "4", "--model", str(base_folder),
                 "--strategy", "subspace", "--subspace-dim", "50", "--projection", "sparse", "--subspace-seed", "7",
                 "--batch-size", "2", "--max-length", "32", "--max-steps", "1", "--threads", "1", "--quiet",
                 "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["strategy"]["subspace"] == {"dim": 50, "projection": "sparse", "seed": 7,
                                                         "exclude": []}
    assert record["trainable_params"] == 50 + 33
    assert "subspace" in capsys.readouterr().out


def test_subspace_dim_larger_than_the_model_is_a_clear_error(tmp_path, base_folder, science_exam, capsys):
    code = main(["train", "--train", str(science_exam / "train.csv"), "--train-limit", "4", "--model", str(base_folder),
                 "--strategy", "subspace", "--subspace-dim", "100000000", "--projection", "fastfood", "--quiet",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert "only D=" in capsys.readouterr().err


def test_excluded_weights_stay_frozen_outside_the_subspace(tmp_path, base_folder, science_exam, minilm_tokenizer):
    strategy = StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(
        dim=40, projection="fastfood", exclude=("bert.embeddings.word_embeddings",)))
    record = short_run(tmp_path / "run", base_folder, strategy, lr=2.0, steps=1)
    assert record["trainable_params"] == 40 + 33
    loaded = load_run(tmp_path / "run").model
    embeddings = loaded.bert.embeddings.word_embeddings
    assert "weight" in embeddings._parameters and not embeddings.weight.requires_grad  # plain, not parametrized
    plain = AutoModelForMultipleChoice.from_pretrained(base_folder)
    assert torch.equal(embeddings.weight, plain.bert.embeddings.word_embeddings.weight)
    assert not torch.equal(loaded.bert.embeddings.position_embeddings.weight,
                           plain.bert.embeddings.position_embeddings.weight)  # in the subspace, so it moved
    assert "exclude" in (tmp_path / "run" / "run.json").read_text()
