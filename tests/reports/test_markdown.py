"""report.md from a fixed set of run records: rows, mean ± s.d., noise verdicts, divergence."""

import pytest

from loralab.runs.artifacts import RECORD, write_json
from loralab.reports import write_report
from report_records import config, row_line, write_run, write_sweep


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


def test_several_data_sets_get_a_section_each(tmp_path):
    write_sweep(tmp_path)
    for i, (strategy, acc) in enumerate([("full", 0.80), ("full", 0.82), ("lora", 0.60)]):
        write_run(tmp_path / f"sst2_{i}", strategy, i, 1000 if strategy == "full" else 10,
                  {"accuracy": acc, "f1": acc - 0.05, "mcc": acc - 0.3, "examples": 872},
                  train="/glue/sst2/train.tsv", task="classification", metric="accuracy")
    report = write_report(tmp_path)
    assert len(report.sections) == 2 and len(report.rows) == 5 + 2
    head, mc, sst2 = report.markdown.split("\n## ")[:3]
    assert "11 runs on 2 data sets, one section each" in head
    assert mc.startswith("multiple-choice: train.csv, validated on valid.csv\n")
    assert "| MAP@3 | accuracy | seeds |" in mc and "### Against the best row (full: MAP@3 0.710)" in mc
    assert "0.710 ± 0.010" in row_line(mc, "full", "lr 5e-05")
    assert sst2.startswith("classification: train.tsv, validated on valid.tsv\n")
    assert "3 runs in 2 rows" in sst2 and "8 training examples, 872 validation examples" in sst2
    assert "| accuracy | F1 | Matthews corr. | seeds |" in sst2 and "MAP@3" not in sst2
    assert "### Against the best row (full: accuracy 0.810)" in sst2
    assert "-0.210" in row_line(sst2.split("### Against")[1], "lora", "")
    assert "(872 examples): accuracy 0.810 ± 0.013" in sst2
    assert sorted(p.name for p in report.files if "classification" in p.name) == [
        "accuracy_vs_lora_alpha_classification-train.png", "accuracy_vs_trainable_params_classification-train.png",
        "loss_curves_classification-train.png"]
    assert "map3_vs_trainable_params_multiple-choice-train.png" in {p.name for p in report.files}


def test_regression_columns_and_lower_is_better(tmp_path):
    for i, (strategy, mse) in enumerate([("full", 0.30), ("full", 0.32), ("qv", 0.50)]):
        write_run(tmp_path / f"r{i}", strategy, i, 100, {"pearson": 1 - mse, "spearman": 0.9, "mse": mse,
                                                          "examples": 50}, task="regression", metric="mse")
    text = write_report(tmp_path).markdown
    assert "| Pearson | Spearman | MSE | seeds |" in text and "0.310 ± 0.014" in row_line(text, "full", "")
    assert "8 training examples, 50 validation examples" in text
    assert "## Against the best row (full: MSE 0.310, lower is better)" in text
    assert "| +0.190 |" in row_line(text.split("## Against")[1], "qv", "") and "Sampling error" not in text
