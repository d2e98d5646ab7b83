"""The report's PNG files, and the best-per-budget front of the metric-against-parameters plot."""

import pytest

from loralab.reports import Row, best_per_budget, budget_front, write_report
from report_records import write_sweep


@pytest.fixture
def sweep_dir(tmp_path):
    return write_sweep(tmp_path)


def test_plot_files_are_pngs(sweep_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report = write_report(sweep_dir, out, metric="accuracy")
    names = sorted(p.name for p in report.files)
    assert names == ["accuracy_vs_lora_alpha.png", "accuracy_vs_trainable_params.png", "loss_curves.png",
                     "report.html", "report.md"]
    for path in report.files:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert "![loss_curves](loss_curves.png)" in (out / "report.md").read_text()


def test_best_per_budget_front():
    points = [(100, 0.5), (100, 0.6), (1000, 0.55), (5000, 0.7), (20000, 0.69), (30000, 0.71)]
    assert best_per_budget(points) == [(100, 0.6), (5000, 0.7), (30000, 0.71)]


def runs(*points):
    """One hand-made row per (trainable parameters, MAP@3, MSE) point."""
    return [Row(str(i), f"r{i}", "lora", {}, [{"status": "completed", "trainable_params": params,
                                               "valid": {"map@3": map3, "mse": mse}}])
            for i, (params, map3, mse) in enumerate(points)]


def test_front_goes_through_the_best_point_of_each_budget():
    rows = runs((10_000, 0.40, 0.9), (80_000, 0.50, 0.8), (80_000, 0.66, 0.3), (80_000, 0.60, 0.5),
                (3_000_000, 0.69, 0.4), (3_000_000, 0.71, 0.2), (22_000_000, 0.70, 0.25), (40_000_000, 0.71, 0.1))
    # 22M loses to 3M's 0.71 and 40M only ties it: the cheaper 3M does as well
    assert budget_front(rows, "map@3") == [(10_000, 0.40), (80_000, 0.66), (3_000_000, 0.71)]
    # lower is better: the smallest MSE of each budget, as long as no cheaper run had a smaller one
    assert budget_front(rows, "mse") == [(10_000, 0.9), (80_000, 0.3), (3_000_000, 0.2), (40_000_000, 0.1)]


def test_costs_within_one_percent_are_one_budget():
    # seed-blog: LoRA with its head frozen trains 385 fewer parameters (73,728) than with it trained
    # (74,113); the front went through both, dropping from the best run of that budget to the worst
    points = [(73_728, 0.352), (74_113, 0.354), (74_113, 0.569), (22_713_601, 0.568), (22_713_601, 0.581)]
    assert best_per_budget(points) == [(74_113, 0.569), (22_713_601, 0.581)]
    assert best_per_budget(points, tolerance=0.0) == [(73_728, 0.352), (74_113, 0.569), (22_713_601, 0.581)]
    # a budget groups costs up to 1% above its cheapest, not a chain of 1% steps
    assert best_per_budget([(100, 0.1), (100.9, 0.3), (101.8, 0.5)]) == [(100.9, 0.3), (101.8, 0.5)]
    # a tie within a budget goes to the cheaper run
    assert best_per_budget([(1000, 0.5), (1005, 0.5)]) == [(1000, 0.5)]


def test_front_skips_runs_without_a_finite_metric():
    rows = runs((100, "NaN", 1.0), (100, 0.5, 2.0), (200, 0.4, "Infinity"))
    rows[1].records[0]["valid"].pop("mse")
    assert budget_front(rows, "map@3") == [(100, 0.5)]
    assert budget_front(rows, "mse") == [(100, 1.0)]


def test_metric_against_memory_and_time_only_for_a_ladder_of_models(tmp_path):
    from loralab.reports import plot_metric_vs_cost

    def row(i, model, peak, seconds, map3):
        return Row(str(i), f"{model} lora", "lora", {}, [{"status": "completed", "trainable_params": 1000,
                                                          "config": {"model": model}, "peak_memory_mb": peak,
                                                          "train_seconds": seconds, "valid": {"map@3": map3}}])

    one_model = [row(0, "minilm", 3000, 600, 0.55), row(1, "minilm", 2000, 500, 0.50)]
    assert plot_metric_vs_cost(one_model, "map@3", tmp_path) is None
    path = plot_metric_vs_cost(one_model + [row(2, "mpnet", 5000, 3600, 0.60)], "map@3", tmp_path)
    assert path.name == "map3_vs_memory_and_time.png" and path.read_bytes()[:4] == b"\x89PNG"
