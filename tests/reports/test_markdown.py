"""report.md from a fixed set of run records: rows, mean ± s.d., noise verdicts, divergence."""

import pytest

from loralab.artifacts import RECORD, write_json
from loralab.reports import write_report
from report_records import config, row_line, write_sweep


@pytest.fixture
def sweep_dir(tmp_path):
    return write_sweep(tmp_path)


def test_table_rows_means_and_divergence(sweep_dir):
    report = write_report(sweep_dir)
    assert [(r.label, len(r.records)) for r in report.rows] == [
        ("full", 3), ("q+v", 2), ("alpha sweep", 1), ("alpha sweep", 1), ("alpha sweep", 1)]
    text = (sweep_dir / "report.md").read_text()
    assert text.startswith("# fixture: results")
    text, left_out = text.split("## Against")[0], text.split("## Records left out")[1]
    full = row_line(text, "full", "lr 5e-05")
    assert "22,000,000" in full and "0.710 ± 0.010" in full and "0, 1, 2" in full and "| 11 ± 1 |" in full
    assert "0.700 ± 0.014" in row_line(text, "q+v", "lr 5e-05")
    assert "0.660" in row_line(text, "alpha sweep", "alpha 512")
    assert "diverged at step 3" in row_line(text, "alpha sweep", "alpha 1024")
    assert "unfinished: status 'running'" in left_out and "not a readable JSON record" in left_out.split("- broken:")[1]


def test_noise_verdicts(sweep_dir):
    text = write_report(sweep_dir).markdown
    differences = text.split("## Against the best row (full: MAP@3 0.710)")[1]
    assert "within noise" in row_line(differences, "q+v", "lr 5e-05")
    assert "worse beyond noise" in row_line(differences, "alpha sweep", "alpha 8")  # 0.21 below, pooled s.d. ~0.012
    assert "-0.210" in row_line(differences, "alpha sweep", "alpha 8")


def test_single_seeds_only_say_noise_is_unknown(tmp_path):
    for i, (strategy, map3) in enumerate([("full", 0.7), ("qv", 0.6)]):
        c = config(strategy, 1e-4, 32.0, 0)
        write_json(tmp_path / f"r{i}" / RECORD, {
            "status": "completed", "strategy": strategy, "config": c.to_dict(), "hyperparameters": c.flat(),
            "trainable_params": 10 + i, "total_params": 100, "train_seconds": 1.0, "peak_memory_mb": 1.0,
            "loss": [1.0], "valid": {"map@3": map3, "accuracy": 0.5, "questions": 10}})
    text = write_report(tmp_path).markdown
    assert "noise unknown (single seed)" in text and "within noise" not in text
