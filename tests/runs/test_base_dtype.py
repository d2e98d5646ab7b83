"""A run on a half base (`--base-dtype bfloat16`): recorded, rebuilt by evaluate, merged in float32, exported."""

import csv
import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForMultipleChoice

from conftest import SCIENCE
from loralab import api
from loralab.cli import main
from loralab.errors import LoralabError
from loralab.models.half import HalfEmbedding, HalfLinear
from loralab.runs import load_adapter, load_run, run
from loralab.runs.config import RunConfig
from loralab.runs.merge import merge_run
from loralab.runs.peft import read_peft_adapter
from loralab.strategies import Strategy, StrategyConfig
from loralab.strategies.lora import LoraConfig
from loralab.training import TrainConfig
from run_fixtures import logits, question_batch, save_tiny_bert

LORA = StrategyConfig(Strategy.LORA, lora=LoraConfig(r=4, alpha=8.0))


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """The first 6 science-exam validation questions, as a file of their own (evaluate scores a whole file)."""
    with open(SCIENCE / "valid.csv", newline="") as f:
        rows = list(csv.reader(f))[:7]
    path = tmp_path_factory.mktemp("data") / "valid.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_tokenizer)


def half_run(out, base_folder, valid, dtype="bfloat16", strategy=LORA):
    training = TrainConfig(lr=0.05, batch_size=2, max_steps=2, max_length=32, warmup_ratio=0.0, seed=0)
    config = RunConfig(train=str(SCIENCE / "train.csv"), valid=str(valid), model=str(base_folder),
                       strategy=strategy, training=training, train_limit=4, device="cpu",
                       base_dtype=dtype)
    return run(config, out, progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory, base_folder, valid):
    out = tmp_path_factory.mktemp("runs") / "bf16"
    half_run(out, base_folder, valid)
    return out


def test_the_record_holds_the_base_dtype_and_what_was_cast(bf16_run):
    record = json.loads((bf16_run / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["config"]["base_dtype"] == "bfloat16" and record["hyperparameters"]["base_dtype"] == "bfloat16"
    assert record["half_base"]["dtype"] == "bfloat16"
    assert record["half_base"]["half_bytes"] * 2 == record["half_base"]["float_bytes"]
    with safe_open(str(bf16_run / "weights.safetensors"), "pt") as f:  # what trained, saved in float32
        assert all(f.get_tensor(k).dtype == torch.float32 for k in f.keys())


def test_evaluate_rebuilds_the_half_base_and_reproduces_the_recorded_metric(bf16_run, valid):
    record = json.loads((bf16_run / "run.json").read_text())
    loaded = load_run(bf16_run, device="cpu")
    assert any(isinstance(m, HalfLinear) for m in loaded.model.modules())
    assert any(isinstance(m, HalfEmbedding) for m in loaded.model.modules())
    metrics = api.evaluate(valid, run=bf16_run, device="cpu", progress=False)
    metric = record["metric"]
    assert metrics["questions"] == 6
    assert metrics[metric] == pytest.approx(record["valid"][metric], abs=1e-9)


def test_merge_writes_float32_weights_equal_to_the_half_base_run(bf16_run, tmp_path, minilm_tokenizer):
    batch = question_batch(minilm_tokenizer)
    adapted = logits(load_run(bf16_run, device="cpu").model, batch)
    merged = AutoModelForMultipleChoice.from_pretrained(merge_run(bf16_run, tmp_path / "merged"))
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    torch.testing.assert_close(logits(merged, batch), adapted, atol=1e-5, rtol=0)


def test_export_peft_records_the_base_dtype_and_loads_back(bf16_run, tmp_path, minilm_tokenizer):
    out = api.export_peft(bf16_run, tmp_path / "adapter")
    adapter = read_peft_adapter(out)
    assert adapter.base_dtype == "bfloat16"
    assert all(t.dtype == torch.float32 for t in adapter.tensors.values())
    batch = question_batch(minilm_tokenizer)
    from_adapter = load_adapter(out, device="cpu")
    assert from_adapter.config.base_dtype == "bfloat16"
    torch.testing.assert_close(logits(from_adapter.model, batch), logits(load_run(bf16_run, device="cpu").model, batch),
                               atol=1e-6, rtol=0)


def test_a_float16_base_trains_and_a_float32_record_still_loads(base_folder, valid, tmp_path):
    record = half_run(tmp_path / "fp16", base_folder, valid, dtype="float16")
    assert record["status"] == "completed" and record["half_base"]["dtype"] == "float16"
    old = half_run(tmp_path / "fp32", base_folder, valid, dtype="float32")
    assert "half_base" not in old
    data = json.loads((tmp_path / "fp32" / "run.json").read_text())
    del data["config"]["base_dtype"]  # as a record from before --base-dtype
    (tmp_path / "fp32" / "run.json").write_text(json.dumps(data))
    loaded = load_run(tmp_path / "fp32", device="cpu")
    assert loaded.config.base_dtype == "float32"
    assert not any(isinstance(m, (HalfLinear, HalfEmbedding)) for m in loaded.model.modules())


def test_the_cli_refuses_a_half_base_under_full_fine_tuning_in_one_line(tmp_path, capsys):
    code = main(["train", "--train", str(SCIENCE / "train.csv"), "--strategy", "full", "--base-dtype", "bfloat16",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--base-dtype bfloat16 with --strategy full" in err


def test_fsdp_refuses_a_half_base_in_one_line(base_folder, tmp_path):
    from loralab.training.distributed import DataParallel

    config = RunConfig(train=str(SCIENCE / "train.csv"), model=str(base_folder), strategy=LORA, train_limit=4,
                       device="cpu", base_dtype="bfloat16")
    with pytest.raises(LoralabError, match="^--base-dtype bfloat16 with --fsdp: "):
        run(config, tmp_path / "run", progress=False, log=lambda _: None, parallel=DataParallel(sharded=True))
