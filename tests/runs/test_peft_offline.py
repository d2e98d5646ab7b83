"""An exported MiniLM adapter names the local folder loralab loaded the base from (the hub name beside
it), so plain peft loads it offline and reproduces `loralab predict` exactly: the docs' snippet."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from conftest import SCIENCE
from loralab.cli import main
from loralab.models import resolve_model
from loralab.runs.artifacts import read_metadata


def plain_peft_scores(adapter: str, data: str, max_length: int = 256) -> dict[str, list[float]]:
    """docs/guide/export.md's snippet: peft and transformers only, offline."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    base_path = json.load(open(f"{adapter}/adapter_config.json"))["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(base_path, local_files_only=True)
    base = AutoModelForMultipleChoice.from_pretrained(base_path, local_files_only=True)
    model = PeftModel.from_pretrained(base, adapter).eval()
    scores = {}
    with open(data, newline="") as f:
        for row in csv.DictReader(f):
            options = [row[letter] for letter in "ABCDE"]
            batch = tokenizer([row["prompt"]] * len(options), options, truncation="longest_first",
                              max_length=max_length, padding=True, return_tensors="pt")
            with torch.no_grad():
                logits = model(**{k: v.unsqueeze(0) for k, v in batch.items()}).logits[0]
            scores[row["id"]] = logits.tolist()
    return scores


@pytest.mark.slow
@pytest.mark.slow
def test_plain_peft_reproduces_loralab_predict_offline(tmp_path, science_exam, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert main(["train", "--train", str(SCIENCE / "train.csv"), "--train-limit", "8", "--strategy", "lora",
                 "--lr", "1e-2", "--max-steps", "2", "--batch-size", "4", "--max-length", "64", "--device", "cpu",
                 "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert main(["export-peft", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "adapter")]) == 0
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == resolve_model("minilm")  # the packaged MiniLM's folder
    hub = "sentence-transformers/all-MiniLM-L6-v2"
    assert read_metadata(tmp_path / "adapter" / "adapter_model.safetensors")["loralab_base_model_hub_name"] == hub
    assert f"base_model: {hub}" in (tmp_path / "adapter" / "README.md").read_text()

    data = tmp_path / "questions.csv"
    with open(SCIENCE / "valid.csv", newline="") as f:
        rows = list(csv.reader(f))[:13]
    with open(data, "w", newline="") as f:
        csv.writer(f).writerows([[c for c, name in zip(row, rows[0]) if name != "answer"] for row in rows])
    assert main(["predict", "--run", str(tmp_path / "run"), "--data", str(data), "--out", str(tmp_path / "p.csv"),
                 "--scores", str(tmp_path / "s.csv"), "--device", "cpu", "--quiet"]) == 0
    with open(tmp_path / "s.csv", newline="") as f:
        loralab = {row["id"]: [float(row[k]) for k in "ABCDE"] for row in csv.DictReader(f)}
    with open(tmp_path / "p.csv", newline="") as f:
        predictions = {row["id"]: row["prediction"] for row in csv.DictReader(f)}
    peft_scores = plain_peft_scores(str(tmp_path / "adapter"), str(data), max_length=64)  # the run's own
    assert peft_scores.keys() == loralab.keys()
    for key, scores in peft_scores.items():
        assert scores == pytest.approx(loralab[key], abs=1e-5)
        top3 = sorted(range(5), key=lambda i: -scores[i])[:3]
        assert " ".join("ABCDE"[i] for i in top3) == predictions[key]
