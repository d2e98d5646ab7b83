"""Decoders end to end: loralab's LoRA against peft's, merge, export-peft, letter and completion runs, generate."""

import copy
import json

import peft
import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import CAUSAL_LM, SCIENCE, tiny_model
from loralab.cli import main
from loralab.models import architecture
from loralab.runs import load_run, run
from loralab.runs.config import RunConfig
from loralab.runs.merge import merge_into_base
from loralab.runs.peft import export_peft
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig, lora_layers, merge, unmerge
from loralab.tasks import TaskConfig
from loralab.training import TrainConfig
from run_fixtures import copy_adapters, save_tiny_decoder

PEFT_TARGETS = {"llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                "gpt2": ["c_attn", "c_proj", "c_fc"]}


def randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("lora_A", "lora_B")):
                param.copy_(torch.randn(param.shape, generator=g) * 0.3)


def tokens(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(3, 100, (2, 10), generator=g), "attention_mask": torch.ones(2, 10, dtype=torch.long)}


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_lora_equals_peft_with_the_same_a_and_b_and_leaves_lm_head_alone(kind):
    base = tiny_model(kind, head=CAUSAL_LM)
    ours = copy.deepcopy(base)
    report = apply_strategy(ours, StrategyConfig(Strategy.LORA, LoraConfig(r=4, alpha=8, targets=("all-linear",))))
    assert not any(name.startswith("lm_head") for name in report.adapted_modules)
    assert architecture(ours).head == ()
    randomise(ours)
    theirs = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=PEFT_TARGETS[kind],
                                                       fan_in_fan_out=kind == "gpt2", task_type="CAUSAL_LM"))
    copy_adapters(ours, theirs)
    assert report.trainable_params == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        expected = theirs(**tokens()).logits
        torch.testing.assert_close(ours(**tokens()).logits, expected, atol=1e-5, rtol=0)
        with theirs.disable_adapter():
            assert (theirs(**tokens()).logits - expected).abs().max() > 1e-3  # the adapters matter
        merge(ours)
        torch.testing.assert_close(ours(**tokens()).logits, expected, atol=1e-5, rtol=0)  # merged = unmerged
        unmerge(ours)
        torch.testing.assert_close(ours(**tokens()).logits, expected, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def decoder_folder(tmp_path_factory, smollm2_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny-llama"), smollm2_tokenizer)


@pytest.fixture(scope="module")
def letter_run(tmp_path_factory, decoder_folder, science_exam):
    out = tmp_path_factory.mktemp("runs") / "letter-lora"
    config = RunConfig(train=str(SCIENCE / "train.csv"), valid=str(SCIENCE / "valid.csv"), model=str(decoder_folder),
                       strategy=StrategyConfig(Strategy.LORA, LoraConfig(r=4, alpha=8, targets=("all-linear",))),
                       training=TrainConfig(lr=0.02, batch_size=4, max_steps=3, max_length=128, warmup_ratio=0.0,
                                            shuffle_options=True),
                       train_limit=12, valid_limit=8, device="cpu")
    run(config, out, progress=False, log=lambda _: None)
    return out


def test_letter_run_records_its_scoring_and_reloads_to_the_same_scores(letter_run):
    record = json.loads((letter_run / "run.json").read_text())
    assert record["status"] == "completed" and record["task"] == "multiple-choice" and record["scoring"] == "letter"
    assert record["valid"]["questions"] == 8 and 0 < record["valid"]["map@3"] <= 1
    assert record["loss"][0] != record["loss"][-1]
    loaded = load_run(letter_run, device="cpu")
    assert loaded.task.scoring == "letter"


def test_causal_merge_loads_in_plain_transformers_with_equal_logits(letter_run, tmp_path):
    loaded = load_run(letter_run, device="cpu")
    with torch.no_grad():
        expected = loaded.model(**tokens()).logits
    assert main(["merge", "--run", str(letter_run), "--out", str(tmp_path / "merged")]) == 0
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(**tokens()).logits, expected, atol=1e-5, rtol=0)
    base = load_run(letter_run, device="cpu")
    merge_into_base(base.model, Strategy.LORA)
    assert not lora_layers(base.model)


def test_exported_causal_adapter_loads_in_peft_with_equal_logits(letter_run, decoder_folder, tmp_path):
    loaded = load_run(letter_run, device="cpu")
    export_peft(loaded, tmp_path / "adapter", run_dir=letter_run)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM" and config["modules_to_save"] == []
    theirs = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(decoder_folder), tmp_path / "adapter")
    assert type(theirs).__name__ == "PeftModelForCausalLM"
    theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(**tokens()).logits, loaded.model(**tokens()).logits, atol=1e-5, rtol=0)


def test_evaluate_scores_a_run_both_ways_and_a_base_model_zero_shot(letter_run, decoder_folder, tmp_path, capsys):
    valid = tmp_path / "valid.csv"
    valid.write_text("".join((SCIENCE / "valid.csv").open().readlines()[:21]))
    for args in (["--run", str(letter_run)], ["--run", str(letter_run), "--scoring", "likelihood"],
                 ["--model", str(decoder_folder)], ["--model", str(decoder_folder), "--scoring", "likelihood"]):
        assert main(["evaluate", *args, "--data", str(valid), "--batch-size", "10", "--quiet"]) == 0
        out = capsys.readouterr().out
        assert "MAP@3" in out and "questions 20" in out
    assert main(["evaluate", "--model", str(decoder_folder), "--data", str(valid), "--scoring", "head", "--quiet"]) == 2
    assert "needs an encoder" in capsys.readouterr().err


def test_completion_run_learns_and_generates(decoder_folder, tmp_path, capsys):
    lines = [{"prompt": f"Q: what is {i} plus one?\nA:", "completion": f" {i + 1}"} for i in range(12)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    assert main(["train", "--train", str(tmp_path / "train.jsonl"), "--valid", str(tmp_path / "train.jsonl"),
                 "--model", str(decoder_folder), "--strategy", "lora", "--lora-targets", "all-linear", "--lr", "0.02",
                 "--batch-size", "4", "--epochs", "3", "--warmup-ratio", "0", "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["task"] == "completion" and record["metric"] == "perplexity"
    assert record["valid"]["tokens"] > 0 and record["valid"]["perplexity"] > 1
    assert record["loss"][-1] < record["loss"][0]
    capsys.readouterr()
    assert main(["generate", "--run", str(tmp_path / "run"), "--prompt", "Q: what is 3 plus one?\nA:",
                 "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- prompt\nQ: what is 3 plus one?") and "--- completion\n" in out


def test_generate_refuses_an_encoder_run_and_completion_refuses_an_encoder(tmp_path, capsys, minilm_tokenizer):
    lines = [json.dumps({"prompt": "a", "completion": "b"})]
    (tmp_path / "t.jsonl").write_text("\n".join(lines))
    assert main(["train", "--train", str(tmp_path / "t.jsonl"), "--model", "minilm", "--out", str(tmp_path / "r"),
                 "--quiet"]) == 2
    assert "completion task needs a decoder" in capsys.readouterr().err
    assert not (tmp_path / "r" / "run.json").exists()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("strategy", [Strategy.FULL, Strategy.QV, Strategy.SUBSPACE])
def test_every_strategy_trains_a_tied_decoder_and_reloads_to_its_recorded_scores(strategy, decoder_folder, tmp_path):
    from loralab.strategies.subspace import SubspaceConfig
    from loralab.training import evaluate

    config = RunConfig(train=str(SCIENCE / "train.csv"), valid=str(SCIENCE / "valid.csv"), model=str(decoder_folder),
                       strategy=StrategyConfig(strategy, subspace=SubspaceConfig(dim=50)),
                       training=TrainConfig(lr=0.01, batch_size=4, max_steps=2, max_length=96, warmup_ratio=0.0),
                       train_limit=8, valid_limit=12, device="cpu")
    record = run(config, tmp_path / "run", progress=False, log=lambda _: None)
    assert record["status"] == "completed" and record["scoring"] == "letter"
    loaded = load_run(tmp_path / "run", device="cpu")
    items = loaded.task.encode(loaded.task.read(SCIENCE / "valid.csv", TaskConfig(), limit=12), loaded.tokenizer, 96)
    again = evaluate(loaded.model, items, task=loaded.task, pad_id=2)
    assert again["map@3"] == pytest.approx(record["valid"]["map@3"], abs=1e-9)


def _refused_before_anything(args, out, capsys, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert not (out / "run.json").exists() and not (out / "weights.safetensors").exists()


def test_text_the_tokenizer_refuses_stops_the_run_before_anything_is_written(decoder_folder, tmp_path, capsys):
    good = "\n".join(json.dumps({"prompt": f"Q{i}", "completion": f" {i}"}) for i in range(4))
    (tmp_path / "train.jsonl").write_text(good)
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "completion": "a \\ud800"}\n')
    base = ["train", "--model", str(decoder_folder), "--max-steps", "1", "--quiet", "--device", "cpu"]
    for train, valid in (("bad.jsonl", "train.jsonl"), ("train.jsonl", "bad.jsonl")):
        out = tmp_path / f"out-{train}"
        _refused_before_anything([*base, "--train", str(tmp_path / train), "--valid", str(tmp_path / valid),
                                  "--out", str(out)], out, capsys, "bad.jsonl, line 1, field 'completion': character 3 "
                                  "is a lone surrogate")
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi \ud800"},
                                                                  {"role": "assistant", "content": "yo"}]}) + "\n")
    out = tmp_path / "out-chat"
    _refused_before_anything([*base, "--train", str(tmp_path / "train.jsonl"), "--valid", str(tmp_path / "chat.jsonl"),
                              "--out", str(out)], out, capsys, "field 'messages[0]': character 4 is a lone surrogate")


def test_a_validation_question_that_cannot_fit_stops_the_run_before_anything_is_written(decoder_folder, tmp_path,
                                                                                         capsys):
    (tmp_path / "train.csv").write_text("id,prompt,A,B,answer\nq1,Why?,yes,no,A\nq2,How?,so,thus,B\n")
    letters = "ABCDE"  # five options' letters need more room than the training file's two
    (tmp_path / "valid.csv").write_text("id,prompt," + ",".join(letters) + ",answer\nq1,Why?,"
                                        + ",".join("x" for _ in letters) + ",A\n")
    out = tmp_path / "out"
    _refused_before_anything(["train", "--model", str(decoder_folder), "--train", str(tmp_path / "train.csv"),
                              "--valid", str(tmp_path / "valid.csv"), "--max-length", "20", "--max-steps", "1", "--scoring", "letter",
                              "--quiet", "--device", "cpu", "--out", str(out)], out, capsys,
                             "valid.csv: question 1 cannot fit max_length=20")
