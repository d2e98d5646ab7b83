import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMultipleChoice

from conftest import tiny_batch, tiny_model
from loralab.cli import main
from loralab.errors import LoralabError
from loralab.runs.merge import PROVENANCE, merge_into_base, merge_run
from loralab.runs import load_run
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig, lora_layers
from run_fixtures import logits, question_batch, save_tiny_bert, short_run

# Every strategy, and LoRA in the settings whose merge differs: scaling (rslora) and targets.
CASES = {
    "full": StrategyConfig(Strategy.FULL),
    "attention": StrategyConfig(Strategy.ATTENTION),
    "qv": StrategyConfig(Strategy.QV),
    "lora-qv": StrategyConfig(Strategy.LORA, lora=LoraConfig(r=4, alpha=8.0)),
    "lora-all-linear-rslora": StrategyConfig(Strategy.LORA, lora=LoraConfig(r=2, alpha=4.0, targets=("all-linear",),
                                                                              rslora=True, dropout=0.1)),
}


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_tokenizer)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, base_folder):
    root = tmp_path_factory.mktemp("runs")
    for name, strategy in CASES.items():
        short_run(root / name, base_folder, strategy)
    return root


def test_merged_lora_model_has_the_plain_architecture():
    model = tiny_model("bert")
    plain_names = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    apply_strategy(model, StrategyConfig(Strategy.LORA))
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_()
    batch = tiny_batch()
    adapted = logits(model, batch)
    merge_into_base(model, Strategy.LORA)
    assert {name: tuple(t.shape) for name, t in model.state_dict().items()} == plain_names
    assert not any(type(m).__module__.startswith("loralab.") for m in model.modules())
    torch.testing.assert_close(logits(model, batch), adapted, atol=1e-5, rtol=0)


@pytest.mark.parametrize("projection", ["dense", "said"])
def test_merged_subspace_model_has_the_plain_architecture(projection):
    from loralab.strategies.subspace import SubspaceConfig, apply_subspace, subspace_of

    model = tiny_model("bert")
    plain = {name: tuple(p.shape) for name, p in model.named_parameters()}
    apply_subspace(model, SubspaceConfig(dim=40, projection=projection), head=("classifier",))
    with torch.no_grad():
        subspace_of(model).theta.normal_(std=50.0)  # P has unit columns over ~70k weights: a big theta to show
    batch = tiny_batch()
    adapted = logits(model, batch)
    assert (adapted - logits(tiny_model("bert"), batch)).abs().max() > 0.1 * adapted.abs().max()
    merge_into_base(model, Strategy.SUBSPACE)
    assert {name: tuple(p.shape) for name, p in model.named_parameters()} == plain
    assert not any(type(m).__module__.startswith("loralab.") for m in model.modules())
    torch.testing.assert_close(logits(model, batch), adapted, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_merged_folder_loads_in_plain_transformers_and_equals_the_adapted_model(case, runs, base_folder, tmp_path,
                                                                                minilm_tokenizer):
    batch = question_batch(minilm_tokenizer)
    adapted = logits(load_run(runs / case).model, batch)
    base = logits(AutoModelForMultipleChoice.from_pretrained(base_folder), batch)
    assert (adapted - base).abs().max() > 1e-3, "training left the model unchanged; the test would prove nothing"

    out = merge_run(runs / case, tmp_path / "merged")
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in files and "config.json" in files and "tokenizer.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    merged = AutoModelForMultipleChoice.from_pretrained(out)
    assert merged.config.model_type == "bert"
    assert set(merged.state_dict()) == set(AutoModelForMultipleChoice.from_pretrained(base_folder).state_dict())
    torch.testing.assert_close(logits(merged, batch), adapted, atol=1e-5, rtol=0)
    assert json.loads((out / PROVENANCE).read_text())["strategy"] == CASES[case].strategy.value


@pytest.mark.slow
def test_merged_minilm_loads_without_loralab(tmp_path, minilm_tokenizer, science_exam):
    """The packaged MiniLM with trained LoRA, read back by a process in which loralab cannot be imported."""
    short_run(tmp_path / "run", "minilm", StrategyConfig(Strategy.LORA, lora=LoraConfig(r=8, alpha=16.0)),
              lr=0.01, steps=1)
    batch = question_batch(minilm_tokenizer)
    adapted = logits(load_run(tmp_path / "run").model, batch)
    assert main(["merge", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "merged")]) == 0
    save_file({k: v for k, v in batch.items()}, str(tmp_path / "batch.safetensors"))
    script = f"""
import sys
sys.modules["loralab"] = None  # any import of loralab now fails
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMultipleChoice, AutoTokenizer
batch = load_file({str(tmp_path / "batch.safetensors")!r})
model = AutoModelForMultipleChoice.from_pretrained({str(tmp_path / "merged")!r}).eval()
AutoTokenizer.from_pretrained({str(tmp_path / "merged")!r})
with torch.no_grad():
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"]).logits
save_file({{"logits": out}}, {str(tmp_path / "logits.safetensors")!r})
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    plain = load_file(str(tmp_path / "logits.safetensors"))["logits"]
    plain = plain.masked_fill(~batch["choice_mask"], torch.finfo(plain.dtype).min)
    torch.testing.assert_close(plain, adapted, atol=1e-5, rtol=0)


def test_merge_refuses_a_non_empty_output_folder(runs, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(LoralabError, match="not an empty folder"):
        merge_run(runs / "qv", tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_merge_of_an_unknown_strategy_is_refused():
    with pytest.raises(LoralabError, match="unknown strategy"):
        merge_into_base(tiny_model("bert"), "subspace-of-nothing")


def test_cli_merge_reports_a_bad_run_folder_without_traceback(tmp_path, capsys):
    assert main(["merge", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "no such run folder" in capsys.readouterr().err
