"""A record with a validation curve shows it in report.md, in a plot and on the HTML page."""

from __future__ import annotations

from conftest import SCIENCE
from run_fixtures import save_tiny_bert
from loralab.reports import write_report
from loralab.runs import run
from loralab.runs.config import RunConfig


def test_the_report_shows_the_curve(tmp_path, minilm_tokenizer, science_exam):
    base = save_tiny_bert(tmp_path / "base", minilm_tokenizer)
    config = RunConfig.from_flat({
        "train": str(SCIENCE / "train.csv"), "valid": str(SCIENCE / "valid.csv"), "model": str(base),
        "train_limit": 12, "valid_limit": 8, "device": "cpu", "strategy.strategy": "lora", "training.lr": 5e-3,
        "training.batch_size": 2, "training.max_length": 32, "training.eval_every": 2, "training.eval_limit": 4})
    record = run(config, tmp_path / "runs" / "lora", progress=False, log=lambda _: None)
    assert [p["step"] for p in record["curve"]] == [2, 4, 6]
    report = write_report(tmp_path / "runs")
    assert "MAP@3 during training" in report.markdown
    assert f"| {record['kept_step']} |" in report.markdown
    assert (tmp_path / "runs" / "map3_during_training.png").is_file()
    assert 'data-figure="curve-s1"' in (tmp_path / "runs" / "report.html").read_text()
