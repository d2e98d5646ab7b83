"""The report's PNG files, and the best-per-budget front of the metric-against-parameters plot."""

import pytest

from loralab.reports import best_per_budget, write_report
from report_records import write_sweep


@pytest.fixture
def sweep_dir(tmp_path):
    return write_sweep(tmp_path)


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
