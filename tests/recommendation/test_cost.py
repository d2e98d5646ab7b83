"""Cost as work grows: the power-law fit, the predictions from one measured point, held-out errors."""

from __future__ import annotations

import math

import pytest

from loralab.recommendation.cost import (EXPONENTS, Exponents, exponents, fit_affine, fit_power, fit_quadratic, held_out,
                                          held_out_affine, held_out_quadratic, predict_peak_mb,
                                          predict_step_seconds, relative_error, scale)


@pytest.mark.parametrize("a,b", [(0.003, 1.0), (2.5, 0.37), (40.0, 1.8), (1.0, -0.5)])
def test_the_fit_recovers_the_exponent_of_a_power_law(a, b):
    xs = [64, 128, 256, 512, 1024]
    fa, fb = fit_power(xs, [a * x**b for x in xs])
    assert fb == pytest.approx(b, abs=1e-9)
    assert fa == pytest.approx(a, rel=1e-9)


def test_the_fit_is_least_squares_in_log_space():
    # log y = 0, 1, 3 at log x = 0, 1, 2: slope 1.5, intercept -1/6 (least squares by hand)
    xs = [1, math.e, math.e**2]
    a, b = fit_power(xs, [1, math.e, math.e**3])
    assert b == pytest.approx(1.5)
    assert math.log(a) == pytest.approx(4 / 3 - 1.5)


@pytest.mark.parametrize("xs,ys", [([1], [1]), ([1, 1], [2, 3]), ([0, 1], [1, 2]), ([1, 2], [1, -2]), ([1, 2], [1])])
def test_a_fit_that_cannot_be_made_is_refused(xs, ys):
    with pytest.raises(ValueError):
        fit_power(xs, ys)


def test_held_out_fits_on_the_others_and_compares_the_prediction_with_the_point():
    xs, ys = [1, 2, 4, 8], [1.0, 2.0, 4.0, 10.0]  # exactly linear but for the last point
    r = held_out(xs, ys, 3)
    assert r["b"] == pytest.approx(1.0) and r["a"] == pytest.approx(1.0)
    assert r["predicted"] == pytest.approx(8.0)
    assert r["error"] == pytest.approx(8.0 / 10.0 - 1.0)
    assert relative_error(11.5, 10.0) == pytest.approx(0.15)


def test_scale_follows_the_power_law_from_one_point():
    assert scale(2.0, 128, 512, 1.0) == pytest.approx(8.0)
    assert scale(2.0, 128, 512, 0.5) == pytest.approx(4.0)
    assert scale(2.0, 128, 128, 1.7) == pytest.approx(2.0)


def test_step_time_scales_along_both_axes(monkeypatch):
    monkeypatch.setitem(EXPONENTS, "lora", Exponents(time_length=1.5, time_batch=0.5, memory_length=1.0,
                                                     memory_batch=1.0))
    # batch 4 -> 16 (x4, ^0.5: x2), length 128 -> 512 (x4, ^1.5: x8)
    assert predict_step_seconds(0.1, at=(4, 128), to=(16, 512), method="lora") == pytest.approx(1.6)
    assert exponents("a-method-never-measured") == EXPONENTS["lora"]


def test_peak_memory_scales_only_what_training_adds(monkeypatch):
    monkeypatch.setitem(EXPONENTS, "full", Exponents(time_length=1.0, time_batch=1.0, memory_length=1.0,
                                                     memory_batch=0.5))
    # 500 MB held before the step, 100 MB added at (4, 128); at (16, 256): 100 * 2 * 2 = 400 added
    assert predict_peak_mb(600.0, 500.0, at=(4, 128), to=(16, 256), method="full") == pytest.approx(900.0)
    assert predict_peak_mb(400.0, 500.0, at=(4, 128), to=(16, 256), method="full") == pytest.approx(500.0)


def test_every_shipped_exponent_is_a_finite_number():
    for method, e in EXPONENTS.items():
        assert all(math.isfinite(v) and 0 < v < 3 for v in vars(e).values()), method


def test_a_probe_peak_is_scaled_to_the_largest_batch_only_when_that_batch_is_larger(monkeypatch):
    from loralab.recommendation.memory import predicted_peak

    monkeypatch.setitem(EXPONENTS, "lora", Exponents(time_length=1.0, time_batch=1.0, memory_length=1.0,
                                                     memory_batch=1.0))
    assert predicted_peak(600.0, 500.0, (100.0, 300.0), "lora") == pytest.approx(800.0)
    assert predicted_peak(600.0, 500.0, (300.0, 300.0), "lora") is None


def test_batch_tokens_are_the_probes_first_batch_and_the_datas_largest(tmp_path, minilm_tokenizer):
    import csv

    from run_fixtures import save_tiny_bert
    from loralab.recommendation.memory import batch_tokens
    from loralab.runs.config import RunConfig
    from loralab.training import TrainConfig

    model = save_tiny_bert(tmp_path / "model", minilm_tokenizer)
    train = tmp_path / "train.csv"
    with open(train, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt", "A", "B", "answer"])
        for i in range(6):  # the last two questions are far longer than the first
            writer.writerow([i, "why" + " and why" * (20 if i >= 4 else 0), "yes", "no", "A"])
    config = RunConfig(train=str(train), model=str(model), device="cpu", training=TrainConfig(batch_size=2, max_length=64))
    probe, largest = batch_tokens(config)
    assert largest > 4 * probe
    short = [int(x) for x in minilm_tokenizer(["why"] * 2, ["yes"] * 2)["attention_mask"][0]]
    assert probe == 2 * 2 * sum(short)  # two questions of two options each


def test_the_affine_fit_recovers_a_fixed_cost_that_a_power_law_bends():
    xs, ys = [32, 64, 128, 256], [0.5 + 0.01 * x for x in (32, 64, 128, 256)]
    assert fit_affine(xs, ys) == pytest.approx((0.5, 0.01))
    assert held_out_affine(xs, ys, 3)["error"] == pytest.approx(0.0, abs=1e-12)
    assert held_out(xs, ys, 3)["error"] < -0.05  # the power law through the small points comes out low
    with pytest.raises(ValueError):
        fit_affine([2, 2], [1.0, 2.0])


def test_the_quadratic_fit_sees_attention_s_square_term_that_a_line_misses():
    lengths = [64, 128, 256, 512, 1024]
    ys = [0.2 + 3e-3 * n + 2e-6 * n * n for n in lengths]
    assert fit_quadratic(lengths, ys) == pytest.approx((0.2, 3e-3, 2e-6), rel=1e-9)
    assert held_out_quadratic(lengths, ys, 4)["error"] == pytest.approx(0.0, abs=1e-9)
    assert held_out_affine(lengths, ys, 4)["error"] < -0.05  # the line through 64..512 comes out low at 1024
    noisy = [y * (1 + e) for y, e in zip(ys, (0.02, -0.02, 0.01, -0.01, 0.0))]
    assert abs(held_out_quadratic(lengths, noisy, 4)["error"]) < 0.1
    with pytest.raises(ValueError):
        fit_quadratic([1, 2, 2], [1.0, 2.0, 3.0])
