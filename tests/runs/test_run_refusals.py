"""A run folder is never applied to the wrong model or read from a damaged file."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from loralab.runs.artifacts import RECORD, WEIGHTS, file_sha256
from loralab.cli import main
from loralab.errors import LoralabError
from loralab.runs import load_run
from loralab.strategies import Strategy, StrategyConfig
from loralab.strategies.lora import LoraConfig
from run_fixtures import save_tiny_bert, short_run


def make_run(root, tokenizer):
    base = save_tiny_bert(root / "base", tokenizer)
    short_run(root / "run", base, StrategyConfig(Strategy.LORA, lora=LoraConfig(r=2)))
    return root / "run", base


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, minilm_tokenizer, science_exam):
    return make_run(tmp_path_factory.mktemp("pristine"), minilm_tokenizer)


@pytest.fixture()
def lora_run(pristine, tmp_path):
    """A copy of one trained run for each test to damage (the base model folder is shared, unchanged)."""
    shutil.copytree(pristine[0], tmp_path / "run")
    return tmp_path / "run", pristine[1]


def rewrite_weights(run_dir, change):
    """Replace the run's tensors with `change(tensors)` and record the new file's hash, as a tool might."""
    tensors = change(load_file(run_dir / WEIGHTS))
    save_file(tensors, run_dir / WEIGHTS)
    record = json.loads((run_dir / RECORD).read_text())
    record["weights_sha256"] = file_sha256(run_dir / WEIGHTS)
    (run_dir / RECORD).write_text(json.dumps(record))


def test_record_describes_the_run(lora_run):
    record = json.loads((lora_run[0] / RECORD).read_text())
    assert record["task"] == "multiple-choice" and record["head"] == ["classifier"]
    assert record["config"]["strategy"]["lora"]["r"] == 2
    assert record["base_model"]["path"] == str(lora_run[1]) and record["base_model"]["fingerprint"].startswith("sha256:")
    assert record["loralab_version"]


def test_a_changed_base_model_is_refused(tmp_path, minilm_tokenizer, science_exam, capsys):
    run_dir, base = make_run(tmp_path, minilm_tokenizer)
    save_tiny_bert(base, minilm_tokenizer, seed=1)  # same name and shapes, different weights
    assert main(["merge", "--run", str(run_dir), "--out", str(run_dir.parent / "merged")]) == 2
    assert "refusing to apply it to a different model" in capsys.readouterr().err
    assert not (run_dir.parent / "merged").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip-a-byte"])
def test_a_damaged_weights_file_is_refused(damage, lora_run):
    run_dir = lora_run[0]
    data = bytearray((run_dir / WEIGHTS).read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-10] ^= 0xFF
    (run_dir / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(LoralabError, match="truncated or modified"):
        load_run(run_dir, device="cpu")


def test_a_truncated_file_without_a_recorded_hash_is_refused(lora_run):
    run_dir = lora_run[0]
    record = json.loads((run_dir / RECORD).read_text())
    del record["weights_sha256"]
    (run_dir / RECORD).write_text(json.dumps(record))
    (run_dir / WEIGHTS).write_bytes((run_dir / WEIGHTS).read_bytes()[:100])
    with pytest.raises(LoralabError, match="not a valid safetensors file"):
        load_run(run_dir, device="cpu")


def test_weights_of_the_wrong_shape_are_refused(lora_run):
    run_dir = lora_run[0]
    rewrite_weights(run_dir, lambda t: {k: torch.zeros(4, v.shape[-1]) if k.endswith("lora_A") else v
                                        for k, v in t.items()})
    with pytest.raises(LoralabError, match=r"has shape \(4, 32\), the model expects \(2, 32\)"):
        load_run(run_dir, device="cpu")


def test_a_missing_tensor_is_refused(lora_run):
    run_dir = lora_run[0]
    rewrite_weights(run_dir, lambda t: {k: v for k, v in t.items() if not k.endswith("lora_B")})
    with pytest.raises(LoralabError, match="missing .* tensor"):
        load_run(run_dir, device="cpu")


def test_a_missing_weights_file_is_refused(lora_run, capsys):
    run_dir = lora_run[0]
    (run_dir / WEIGHTS).unlink()
    assert main(["export-peft", "--run", str(run_dir), "--out", str(run_dir.parent / "adapter")]) == 2
    assert "weights file missing" in capsys.readouterr().err
