import json

import peft
import pytest
import torch
from transformers import AutoModelForMultipleChoice

from conftest import CLASSIFICATION, SCIENCE, tiny_model, tiny_text_batch
from loralab.runs.artifacts import save_weights, write_json
from loralab.cli import main
from loralab.errors import LoralabError
from loralab.metrics import accuracy, map_at_k
from loralab.runs import load_adapter, load_run
from loralab.runs.peft import (CONFIG, WEIGHTS, apply_peft_adapter, export_peft, peft_config,
                                  peft_state, read_peft_adapter)
from loralab.runs import load_run
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig
from run_fixtures import logits, question_batch, save_tiny_bert, short_run

# loralab runs exported to peft: the settings that change peft's config (targets, scaling, dropout).
EXPORTS = {
    "qv": LoraConfig(r=4, alpha=8.0),
    "all-linear-rslora": LoraConfig(r=2, alpha=4.0, targets=("all-linear",), rslora=True, dropout=0.1),
}

# Adapters trained with peft and read by loralab: target lists, regexes and rsLoRA scaling.
IMPORTS = {
    "qv-list": dict(r=4, lora_alpha=16, target_modules=["query", "value"]),
    "output-regex-rslora": dict(r=2, lora_alpha=8, target_modules=r".*attention\.output\.dense", use_rslora=True),
    "all-linear": dict(r=2, lora_alpha=4, target_modules="all-linear"),
}


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_tokenizer)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, base_folder):
    root = tmp_path_factory.mktemp("runs")
    for name, lora in EXPORTS.items():
        short_run(root / name, base_folder, StrategyConfig(Strategy.LORA, lora=lora))
    short_run(root / "selection-qv", base_folder, StrategyConfig(Strategy.QV))
    return root


def peft_adapter(folder, base_folder, settings, seed=0):
    """A peft model on the tiny base with random non-zero adapters and head, saved to `folder`."""
    base = AutoModelForMultipleChoice.from_pretrained(base_folder)
    model = peft.get_peft_model(base, peft.LoraConfig(**settings, modules_to_save=["classifier"], task_type=None))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.3)
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("case", sorted(EXPORTS))
def test_exported_adapter_loaded_by_peft_equals_loralab(case, runs, base_folder, tmp_path, minilm_tokenizer):
    batch = question_batch(minilm_tokenizer)
    ours = logits(load_run(runs / case).model, batch)
    assert main(["export-peft", "--run", str(runs / case), "--out", str(tmp_path / "adapter")]) == 0
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [CONFIG, WEIGHTS]

    base = AutoModelForMultipleChoice.from_pretrained(base_folder)
    with torch.no_grad():  # a head unlike the trained one: the adapter must carry the head
        base.classifier.weight.normal_()
    assert (logits(base, batch) - ours).abs().max() > 1e-2
    restored = peft.PeftModel.from_pretrained(base, tmp_path / "adapter")
    torch.testing.assert_close(logits(restored, batch), ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", sorted(IMPORTS))
def test_peft_saved_adapter_loaded_by_loralab_equals_peft(case, base_folder, tmp_path, minilm_tokenizer):
    batch = question_batch(minilm_tokenizer)
    model = peft_adapter(tmp_path / "adapter", base_folder, IMPORTS[case])
    expected = logits(model, batch)
    with model.disable_adapter():
        assert (expected - logits(model, batch)).abs().max() > 1e-2  # the adapter changes the outputs

    loaded = load_adapter(tmp_path / "adapter", device="cpu")  # base from base_model_name_or_path
    torch.testing.assert_close(logits(loaded.model, batch), expected, atol=1e-5, rtol=0)
    trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    assert trainable == model.get_nb_trainable_parameters()[0]  # same adapters and head train in both


def test_peft_adapter_keeps_training_in_loralab_from_its_weights(base_folder, tmp_path, minilm_tokenizer):
    batch = question_batch(minilm_tokenizer)
    expected = logits(peft_adapter(tmp_path / "adapter", base_folder, IMPORTS["qv-list"]), batch)
    adapter = read_peft_adapter(tmp_path / "adapter")

    # A learning rate too small to move the weights: the run must start exactly at the adapter.
    assert main(["train", "--adapter", str(tmp_path / "adapter"), "--train", str(SCIENCE / "train.csv"),
                 "--train-limit", "4", "--max-steps", "1", "--batch-size", "2", "--max-length", "32",
                 "--lr", "1e-12", "--out", str(tmp_path / "still"), "--quiet", "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "still" / "run.json").read_text())
    assert record["started_from_adapter"] == str(tmp_path / "adapter")
    assert record["config"]["model"] == str(base_folder)  # from the adapter's base_model_name_or_path
    torch.testing.assert_close(logits(load_run(tmp_path / "still").model, batch), expected, atol=1e-5, rtol=0)

    short_run(tmp_path / "moved", base_folder, adapter.strategy, lr=0.05, adapter=tmp_path / "adapter")
    moved = load_run(tmp_path / "moved").model.state_dict()
    for name, tensor in adapter.tensors.items():
        if name == "classifier.bias":
            continue  # a bias shared by all choices cancels in the softmax over them: its gradient is zero
        assert not torch.equal(moved[name], tensor), f"{name} did not train"


def test_cli_evaluates_a_peft_adapter(base_folder, tmp_path, minilm_tokenizer, capsys):
    model = peft_adapter(tmp_path / "adapter", base_folder, IMPORTS["qv-list"])
    batch = question_batch(minilm_tokenizer, n=6, max_length=256)  # the CLI's default max_length
    scores = logits(model, batch).tolist()
    labels = batch["labels"].tolist()
    data = tmp_path / "six.csv"
    data.write_text("".join((SCIENCE / "valid.csv").read_text().splitlines(keepends=True)[:7]))
    assert main(["evaluate", "--adapter", str(tmp_path / "adapter"), "--model", str(base_folder),
                 "--data", str(data), "--quiet", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"MAP@3     {map_at_k(scores, labels, 3):.4f}" in out
    assert f"accuracy  {accuracy(scores, labels):.4f}" in out


def test_export_refuses_a_run_that_is_not_lora(runs, tmp_path, capsys):
    assert main(["export-peft", "--run", str(runs / "selection-qv"), "--out", str(tmp_path / "a")]) == 2
    assert "strategy 'qv'" in capsys.readouterr().err


def test_exported_adapter_refuses_a_different_base_model(runs, tmp_path, minilm_tokenizer):
    export_peft(load_run(runs / "qv", device="cpu"), tmp_path / "adapter")
    other = save_tiny_bert(tmp_path / "other-bert", minilm_tokenizer, seed=1)  # same shapes, other weights
    with pytest.raises(LoralabError, match="fingerprint"):
        load_adapter(tmp_path / "adapter", model=str(other), device="cpu")


def test_adapter_with_wrong_shapes_is_refused(base_folder, tmp_path, minilm_tokenizer):
    peft_adapter(tmp_path / "adapter", base_folder, IMPORTS["qv-list"])
    wider = save_tiny_bert(tmp_path / "wider-bert", minilm_tokenizer, hidden=48)
    with pytest.raises(LoralabError, match="shape"):
        load_adapter(tmp_path / "adapter", model=str(wider), device="cpu")


def test_truncated_adapter_file_is_refused(base_folder, tmp_path):
    peft_adapter(tmp_path / "adapter", base_folder, IMPORTS["qv-list"])
    weights = tmp_path / "adapter" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(LoralabError, match="not a valid safetensors file"):
        read_peft_adapter(tmp_path / "adapter")


def test_pickled_adapter_is_never_loaded(base_folder, tmp_path):
    peft_adapter(tmp_path / "adapter", base_folder, IMPORTS["qv-list"])
    (tmp_path / "adapter" / WEIGHTS).rename(tmp_path / "adapter" / "adapter_model.bin")
    with pytest.raises(LoralabError, match="pickle"):
        read_peft_adapter(tmp_path / "adapter")


@pytest.mark.parametrize("field, value, message", [
    ("init_lora_weights", "corda", "initialisation"),
    ("bias", "lora_only", "bias"),
    ("rank_pattern", {"query": 8}, "rank_pattern"),
    ("peft_type", "IA3", "LORA adapters only"),
])
def test_unsupported_peft_features_are_refused(field, value, message, base_folder, tmp_path):
    peft_adapter(tmp_path / "adapter", base_folder, IMPORTS["qv-list"])
    config_path = tmp_path / "adapter" / CONFIG
    config = json.loads(config_path.read_text())
    config[field] = value
    config_path.write_text(json.dumps(config))
    with pytest.raises(LoralabError, match=message):
        read_peft_adapter(tmp_path / "adapter")


def test_gpt2_conv1d_adapters_carry_over_both_ways(tmp_path):
    """GPT-2 stores W0 transposed (peft's fan_in_fan_out); A, B and the outputs carry over unchanged."""
    lora = LoraConfig(r=4, alpha=8.0, targets=("all-linear",))
    ours = tiny_model("gpt2", head=CLASSIFICATION)
    apply_strategy(ours, StrategyConfig(Strategy.LORA, lora=lora))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in ours.named_parameters():
            if name.endswith("lora_B") or name.startswith("score."):
                param.copy_(torch.randn(param.shape, generator=g) * 0.3)
    batch = {k: v for k, v in tiny_text_batch().items() if k != "labels"}
    ours.eval()
    with torch.no_grad():
        expected = ours(**batch).logits
    save_weights(tmp_path / "ours" / WEIGHTS, peft_state(ours))
    write_json(tmp_path / "ours" / CONFIG, peft_config(ours, lora, "tiny-gpt2"))
    assert json.loads((tmp_path / "ours" / CONFIG).read_text())["fan_in_fan_out"] is True

    theirs = peft.PeftModel.from_pretrained(tiny_model("gpt2", head=CLASSIFICATION), tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(**batch).logits, expected, atol=1e-5, rtol=0)
    theirs.save_pretrained(tmp_path / "theirs")
    again = tiny_model("gpt2", head=CLASSIFICATION)
    apply_peft_adapter(again, read_peft_adapter(tmp_path / "theirs"))
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, expected, atol=1e-5, rtol=0)


def test_mpnet_pooler_trains_with_the_head_and_travels_to_peft(tmp_path):
    """MPNet's checkpoints ship the pooler untrained, so the multiple-choice head includes it: LoRA trains it,
    QLoRA leaves it unquantized, and an exported adapter carries it to peft (with equal logits)."""
    import copy

    from safetensors.torch import save_file

    from conftest import tiny_batch
    from loralab.models.quantize import QuantizeConfig, is_quantized, quantize_model
    from loralab.tasks.multiple_choice import TASK

    base = tiny_model("mpnet")
    model = copy.deepcopy(base)
    lora = LoraConfig(r=2, alpha=4.0)
    apply_strategy(model, StrategyConfig(Strategy.LORA, lora=lora))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {"mpnet.pooler.dense.weight", "mpnet.pooler.dense.bias", "classifier.weight"} <= trainable
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # adapters and head unlike a fresh peft model's
        for name in sorted(trainable):
            param = model.get_parameter(name)
            param.add_(torch.randn(param.shape, generator=g) * 0.3)
    config = peft_config(model, lora, "tiny-mpnet")
    assert config["modules_to_save"] == ["mpnet.pooler", "classifier"]
    (tmp_path / CONFIG).write_text(json.dumps(config))
    save_file({k: v.detach().contiguous() for k, v in peft_state(model).items()}, tmp_path / WEIGHTS)

    batch = tiny_batch()
    model.eval()
    with torch.no_grad():
        ours = torch.tensor(TASK.outputs(model, batch, packed=False))
        restored = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
        theirs = torch.tensor(TASK.outputs(restored, batch, packed=False))
        plain = torch.tensor(TASK.outputs(base, batch, packed=False))
    assert (plain - ours).abs().max() > 1e-2
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)

    quantize_model(model, QuantizeConfig("nf4", double_quant=True))
    assert is_quantized(model.mpnet.encoder.layer[0].attention.attn.k)  # frozen base: 4-bit
    assert type(model.mpnet.pooler.dense) is torch.nn.Linear  # head: float, and training
