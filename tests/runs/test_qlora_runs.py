"""QLoRA runs end to end: record, reload bit for bit, merge to float, export to peft on its own 4-bit base."""

import json

import peft
import pytest
import torch
from transformers import AutoModelForMultipleChoice

from conftest import SCIENCE
from loralab.cli import main
from loralab.models.quantize import QuantizeConfig, is_quantized
from loralab.runs import load_adapter, load_run, run
from loralab.runs import one_run
from loralab.runs.config import RunConfig
from loralab.runs.merge import merge_run
from loralab.runs.peft import bnb_config, export_peft
from loralab.strategies import Strategy, StrategyConfig
from loralab.strategies.lora import LoraConfig
from loralab.training import TrainConfig, score
from run_fixtures import logits, question_batch, save_tiny_bert

QUANTIZE = QuantizeConfig("nf4", double_quant=True)
LORA = LoraConfig(r=4, alpha=16.0, dropout=0.1, targets=("query", "value", "attention_output"), rslora=True)


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_tokenizer, hidden=64)


def config(base_folder, quantize=QUANTIZE, strategy=None):
    training = TrainConfig(lr=0.05, batch_size=2, max_steps=2, max_length=32, warmup_ratio=0.0, seed=0)
    return RunConfig(train=str(SCIENCE / "train.csv"), valid=str(SCIENCE / "valid.csv"), model=str(base_folder),
                     strategy=strategy or StrategyConfig(Strategy.LORA, LORA), training=training, train_limit=4,
                     valid_limit=6, device="cpu", quantize=quantize)


@pytest.fixture(scope="module")
def qlora(tmp_path_factory, base_folder):
    """A QLoRA run, and the scores its own in-memory model gave on the validation questions."""
    folder = tmp_path_factory.mktemp("qlora")
    seen = {}
    evaluate = one_run.evaluate

    def capture(model, items, **kwargs):
        seen["scores"] = score(model, items, **{k: v for k, v in kwargs.items() if k != "progress"})
        seen["model"] = model
        return evaluate(model, items, **kwargs)

    one_run.evaluate = capture
    try:
        record = run(config(base_folder), folder, progress=False, log=lambda _: None)
    finally:
        one_run.evaluate = evaluate
    return folder, record, seen


def loaded_scores(loaded, n=6):
    from loralab.tasks.multiple_choice import encode, read_questions

    items = encode(read_questions(SCIENCE / "valid.csv", limit=n), loaded.tokenizer, loaded.config.training.max_length)
    return score(loaded.model, items, task=loaded.task, pad_id=loaded.tokenizer.pad_token_id)


def test_record_states_the_quantization(qlora):
    _, record, seen = qlora
    q = record["quantization"]
    assert (q["method"], q["double_quant"], q["compute_dtype"]) == ("nf4", True, "float32")
    assert q["layers"] == 2 * 6 + 1  # every linear layer of 2 BERT layers, and the pooler
    assert q["quantized_bytes"] < 0.2 * q["float_bytes"]
    assert record["config"]["quantize"] == {"method": "nf4", "double_quant": True, "compute_dtype": "float32"}
    assert any(is_quantized(m) for m in seen["model"].modules())
    assert record["loss"][0] != record["loss"][-1]


def test_quantize_save_load_gives_bitwise_equal_outputs(qlora):
    folder, _, seen = qlora
    loaded = load_run(folder, device="cpu")
    assert sum(is_quantized(m) for m in loaded.model.modules()) == 13
    assert loaded_scores(loaded) == seen["scores"]  # every float, bit for bit


def test_merge_dequantizes_and_writes_a_plain_float_model(qlora, tmp_path, minilm_tokenizer):
    folder, _, _ = qlora
    loaded = load_run(folder, device="cpu")
    batch = question_batch(minilm_tokenizer)
    adapted = logits(loaded.model, batch)
    out = merge_run(folder, tmp_path / "merged")
    merged = AutoModelForMultipleChoice.from_pretrained(out)
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    assert all(type(m).__module__.startswith(("torch.", "transformers.")) for m in merged.modules())
    # The unmerged layers multiply by the dequantized weights too: only float rounding differs (W x + B A x
    # against (W + B A) x sums in another order: up to 2.2e-5 seen on logits near 1; a wrong merge is off by 1e-1).
    torch.testing.assert_close(logits(merged, batch), adapted, atol=1e-4, rtol=1e-4)
    provenance = json.loads((out / "loralab_merge.json").read_text())
    assert provenance["dequantized"]["method"] == "nf4"


def test_export_peft_matches_on_peft_own_4bit_base(qlora, tmp_path, base_folder, minilm_tokenizer):
    folder, _, _ = qlora
    loaded = load_run(folder, device="cpu")
    batch = question_batch(minilm_tokenizer)
    ours = logits(loaded.model, batch)
    out = export_peft(loaded, tmp_path / "adapter", run_dir=folder)
    base = AutoModelForMultipleChoice.from_pretrained(base_folder, quantization_config=bnb_config(QUANTIZE, ("classifier",)),
                                                      device_map="cpu")
    theirs = peft.PeftModel.from_pretrained(base, out)
    quantized = [m for m in theirs.modules() if type(m).__name__ == "Linear4bit" and type(m).__module__.startswith("bitsandbytes")]
    assert len(quantized) == 13
    for layer in quantized:
        layer.support_avx512bf16_for_cpu = False  # bitsandbytes' bf16 CPU kernel: see loralab.models.quantize
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "choice_mask")}
    theirs.eval()
    with torch.no_grad():
        peft_logits = theirs(**inputs).logits
    torch.testing.assert_close(peft_logits, ours, atol=1e-5, rtol=1e-5)
    # loralab reads the adapter back onto a float base and quantizes it as the run did.
    again = load_adapter(out, model=str(base_folder), device="cpu")
    assert again.config.quantize == QUANTIZE
    assert torch.equal(logits(again.model, batch), ours)


def test_a_quantized_adapter_is_not_the_float_model(qlora, base_folder, minilm_tokenizer, tmp_path):
    """The same run on the float base differs: the 4-bit base is not a no-op."""
    folder, _, _ = qlora
    record = run(config(base_folder, quantize=QuantizeConfig()), tmp_path / "lora", progress=False, log=lambda _: None)
    assert "quantization" not in record
    batch = question_batch(minilm_tokenizer)
    difference = (logits(load_run(tmp_path / "lora", device="cpu").model, batch)
                  - logits(load_run(folder, device="cpu").model, batch)).abs().max()
    assert difference > 1e-4


@pytest.mark.parametrize("args,option", [
    (["--strategy", "full", "--quantize", "nf4"], "--quantize"),
    (["--strategy", "subspace", "--quantize", "fp4"], "--quantize"),
    (["--strategy", "lora", "--quantize", "int8", "--double-quant"], "--double-quant"),
    (["--strategy", "lora", "--quantize", "int8", "--compute-dtype", "bfloat16"], "--compute-dtype"),
])
def test_cli_refuses_in_one_line(args, option, tmp_path, capsys, science_exam):
    code = main(["train", "--train", str(SCIENCE / "train.csv"), "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and option in err
    assert not (tmp_path / "run" / "run.json").exists()
