"""The methods beyond plain LoRA, each through a whole run: train 2 steps, save, load bitwise, merge, export to peft.

One table of cases; each method's own expectations (what it saves, whether peft reads it) are columns.
"""

import peft
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMultipleChoice

from loralab.cli import main
from loralab.runs import load_run
from loralab.runs.merge import merge_run
from loralab.strategies import Strategy, StrategyConfig
from loralab.strategies.lora import LoraConfig
from loralab.settings.strategy import GaloreConfig, IA3Config, VeraConfig
from run_fixtures import logits, question_batch, save_tiny_bert, short_run

LORA = dict(r=4, alpha=8.0)
# name: (strategy settings, exported to peft)
CASES = {
    "dora": (StrategyConfig(Strategy.LORA, lora=LoraConfig(**LORA, use_dora=True)), True),
    "pissa": (StrategyConfig(Strategy.LORA, lora=LoraConfig(**LORA, init="pissa")), True),
    "pissa-niter": (StrategyConfig(Strategy.LORA, lora=LoraConfig(**LORA, init="pissa", pissa_niter=2)), False),
    "olora": (StrategyConfig(Strategy.LORA, lora=LoraConfig(**LORA, init="olora")), True),
    "lora-plus": (StrategyConfig(Strategy.LORA, lora=LoraConfig(**LORA, plus_ratio=16.0)), True),
    "vera": (StrategyConfig(Strategy.VERA, vera=VeraConfig(r=8, seed=3)), True),
    "ia3": (StrategyConfig(Strategy.IA3, ia3=IA3Config()), True),
    "galore": (StrategyConfig(Strategy.GALORE, galore=GaloreConfig(rank=4, update_proj_gap=1)), False),
}


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_tokenizer)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, base_folder):
    root = tmp_path_factory.mktemp("runs")
    for name, (strategy, _) in CASES.items():
        short_run(root / name, base_folder, strategy, lr=0.02, steps=2)
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_run_loads_back_bitwise_and_saves_only_what_trained(case, runs, base_folder, minilm_tokenizer):
    saved = load_file(str(runs / case / "weights.safetensors"))
    loaded = load_run(runs / case, device="cpu")
    params = dict(loaded.model.named_parameters())
    for name, tensor in saved.items():
        assert torch.equal(params[name], tensor), name
    trained = {n for n, p in params.items() if p.requires_grad}
    assert trained <= set(saved)
    assert not any("vera_A" in n or "vera_B" in n for n in saved)  # VeRA's shared matrices: rebuilt from the seed
    batch = question_batch(minilm_tokenizer)
    base = logits(AutoModelForMultipleChoice.from_pretrained(base_folder), batch)
    assert (logits(loaded.model, batch) - base).abs().max() > 1e-3, "training changed nothing; the test proves nothing"


@pytest.mark.parametrize("case", sorted(CASES))
def test_merged_folder_equals_the_adapted_model(case, runs, tmp_path, minilm_tokenizer):
    batch = question_batch(minilm_tokenizer)
    adapted = logits(load_run(runs / case).model, batch)
    merged = AutoModelForMultipleChoice.from_pretrained(merge_run(runs / case, tmp_path / "merged"))
    torch.testing.assert_close(logits(merged, batch), adapted, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", sorted(c for c, (_, exported) in CASES.items() if exported))
def test_exported_adapter_loaded_by_peft_equals_loralab(case, runs, base_folder, tmp_path, minilm_tokenizer):
    batch = question_batch(minilm_tokenizer)
    ours = logits(load_run(runs / case).model, batch)
    assert main(["export-peft", "--run", str(runs / case), "--out", str(tmp_path / "adapter")]) == 0
    restored = peft.PeftModel.from_pretrained(AutoModelForMultipleChoice.from_pretrained(base_folder),
                                              tmp_path / "adapter")
    torch.testing.assert_close(logits(restored, batch), ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", sorted(c for c, (_, exported) in CASES.items() if not exported))
def test_what_peft_cannot_rebuild_is_refused_by_export_peft(case, runs, tmp_path, capsys):
    assert main(["export-peft", "--run", str(runs / case), "--out", str(tmp_path / "adapter")]) == 2
    assert "loralab merge" in capsys.readouterr().err
    assert not (tmp_path / "adapter").exists()


def test_lora_plus_trains_b_faster_than_a(base_folder, tmp_path):
    """The same run with and without LoRA+: A moves alike (same rate), B moves further."""
    moved = {}
    for name, ratio in (("plain", None), ("plus", 16.0)):
        short_run(tmp_path / name, base_folder, StrategyConfig(Strategy.LORA, lora=LoraConfig(**LORA, plus_ratio=ratio)),
                  lr=1e-3, steps=1)
        moved[name] = load_file(str(tmp_path / name / "weights.safetensors"))
    b = [k for k in moved["plain"] if k.endswith("lora_B")]
    a = [k for k in moved["plain"] if k.endswith("lora_A")]
    for k in a:
        assert torch.equal(moved["plain"][k], moved["plus"][k])  # one step: A's update does not see B
    ratio = sum(moved["plus"][k].abs().sum() for k in b) / sum(moved["plain"][k].abs().sum() for k in b)
    assert 15.0 < ratio < 17.0  # Adam's first step is lr * sign-like: B moves 16 times as far


# peft LoRA variants that `--adapter` reads: peft's own settings.
IMPORTS = {
    "dora": dict(r=4, lora_alpha=8, target_modules=["query", "value"], use_dora=True),
    "pissa": dict(r=4, lora_alpha=8, target_modules=["query"], init_lora_weights="pissa"),
    "olora-dora": dict(r=2, lora_alpha=4, target_modules=["key"], init_lora_weights="olora", use_dora=True),
}


@pytest.mark.parametrize("case", sorted(IMPORTS))
def test_peft_variant_adapter_loaded_by_loralab_equals_peft(case, base_folder, tmp_path, minilm_tokenizer):
    from loralab.runs import load_adapter

    batch = question_batch(minilm_tokenizer)
    model = peft.get_peft_model(AutoModelForMultipleChoice.from_pretrained(base_folder),
                                peft.LoraConfig(**IMPORTS[case], modules_to_save=["classifier"], task_type=None))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name or "magnitude" in name:
                param.add_(torch.randn(param.shape, generator=g) * 0.3)
    model.save_pretrained(tmp_path / "adapter")
    expected = logits(model, batch)
    loaded = load_adapter(tmp_path / "adapter", device="cpu", model=str(base_folder))
    torch.testing.assert_close(logits(loaded.model, batch), expected, atol=1e-5, rtol=0)
