"""Reports from a fixed set of run records: rows, mean ± s.d., noise verdicts, divergence, plot files."""

import pytest

from loralab.artifacts import RECORD, write_json
from loralab.cli import main
from loralab.config import RunConfig
from loralab.errors import LoralabError
from loralab.experiment import MANIFEST
from loralab.report import best_per_budget, write_report
from loralab.strategies import StrategyConfig
from loralab.strategies.lora import LoraConfig
from loralab.train import TrainConfig

# (folder, label, strategy, lr, alpha, seed, trainable params, MAP@3 or None when diverged)
RUNS = [
    ("full_s0", "full", "full", 5e-5, 32.0, 0, 22_000_000, 0.70),
    ("full_s1", "full", "full", 5e-5, 32.0, 1, 22_000_000, 0.71),
    ("full_s2", "full", "full", 5e-5, 32.0, 2, 22_000_000, 0.72),
    ("qv_s0", "q+v", "qv", 5e-5, 32.0, 0, 3_000_000, 0.69),
    ("qv_s1", "q+v", "qv", 5e-5, 32.0, 1, 3_000_000, 0.71),
    ("lora_a8", "alpha sweep", "lora", 1e-5, 8.0, 0, 80_000, 0.50),
    ("lora_a512", "alpha sweep", "lora", 1e-5, 512.0, 0, 80_000, 0.66),
    ("lora_a1024", "alpha sweep", "lora", 1e-5, 1024.0, 0, 80_000, None),
]


def config(strategy, lr, alpha, seed):
    return RunConfig(train="/data/train.csv", valid="/data/valid.csv",
                     strategy=StrategyConfig(strategy=strategy, lora=LoraConfig(alpha=alpha)),
                     training=TrainConfig(lr=lr, seed=seed))


@pytest.fixture
def sweep_dir(tmp_path):
    for folder, _, strategy, lr, alpha, seed, params, map3 in RUNS:
        c = config(strategy, lr, alpha, seed)
        record = {"status": "completed", "strategy": strategy, "config": c.to_dict(), "hyperparameters": c.flat(),
                  "trainable_params": params, "total_params": 22_000_000, "train_seconds": 10.0 + seed,
                  "peak_memory_mb": 900.0, "loss": [1.6, 1.5, 1.4, 1.3], "train_questions": 200,
                  "base_model": {"name": "minilm"}, "device": "cpu", "machine": "test"}
        if map3 is None:
            record.update(status="diverged", diverged_at_step=3, loss=[1.6, 9.0, float("nan")])
        else:
            record["valid"] = {"map@3": map3, "accuracy": map3 - 0.1, "questions": 200}
        write_json(tmp_path / folder / RECORD, record)
    write_json(tmp_path / "unfinished" / RECORD, {"status": "running", "hyperparameters": {}})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / RECORD).write_text('{"status": "compl')  # a record cut short
    write_json(tmp_path / MANIFEST, {"experiment": "fixture", "description": "Fixed records.",
                                     "runs": [{"folder": r[0], "labels": [r[1]]} for r in RUNS]})
    return tmp_path


def row_line(text: str, label: str, settings: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {label} |") and settings in line]
    return line


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


def test_plot_files_are_pngs(sweep_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report = write_report(sweep_dir, out, metric="accuracy")
    names = sorted(p.name for p in report.files)
    assert names == ["accuracy_vs_lora_alpha.png", "accuracy_vs_trainable_params.png", "loss_curves.png",
                     "report.md"]
    for path in report.files:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert "![loss_curves](loss_curves.png)" in (out / "report.md").read_text()


def test_best_per_budget_front():
    points = [(100, 0.5), (100, 0.6), (1000, 0.55), (5000, 0.7), (20000, 0.69), (30000, 0.71)]
    assert best_per_budget(points) == [(100, 0.6), (5000, 0.7), (30000, 0.71)]


def test_single_seeds_only_say_noise_is_unknown(tmp_path):
    for i, (strategy, map3) in enumerate([("full", 0.7), ("qv", 0.6)]):
        c = config(strategy, 1e-4, 32.0, 0)
        write_json(tmp_path / f"r{i}" / RECORD, {
            "status": "completed", "strategy": strategy, "config": c.to_dict(), "hyperparameters": c.flat(),
            "trainable_params": 10 + i, "total_params": 100, "train_seconds": 1.0, "peak_memory_mb": 1.0,
            "loss": [1.0], "valid": {"map@3": map3, "accuracy": 0.5, "questions": 10}})
    text = write_report(tmp_path).markdown
    assert "noise unknown (single seed)" in text and "within noise" not in text


def test_cli_report_and_empty_folder(sweep_dir, tmp_path_factory, capsys):
    assert main(["report", str(sweep_dir)]) == 0
    assert "| full |" in capsys.readouterr().out
    empty = tmp_path_factory.mktemp("empty")
    assert main(["report", str(empty)]) == 2
    assert "no finished run records" in capsys.readouterr().err
    with pytest.raises(LoralabError, match="unknown metric"):
        write_report(sweep_dir, metric="f1")
