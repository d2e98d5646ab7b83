"""Cost as work grows: step time and peak memory follow power laws in sequence length and batch size.

Measured by `benchmarks/cost.py` (results in `benchmarks/results/cost.json`), each curve is fitted as

    y = a * x ** b        (least squares on log y against log x)

so one measured point (x0, y0) and the exponent b predict any other point: y = y0 * (x / x0) ** b.
Peak memory is fitted on what training adds to the memory held before the first step (activations,
gradients, optimizer state), since the weights and the interpreter do not grow with the batch:

    peak(x) = before + (peak0 - before) * (x / x0) ** b

Torch-free: only arithmetic, so it can be used before any model is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SOURCE = ("benchmarks/results/cost.json (python benchmarks/cost.py: MiniLM, MPNet-base and SmolLM2-135M; full, LoRA "
          "and QLoRA; a loaded 2-core CPU)")
"""Where the exponents below were measured."""


@dataclass(frozen=True)
class Exponents:
    """How one method's step time and added memory grow with sequence length and with batch size."""

    time_length: float
    time_batch: float
    memory_length: float
    memory_batch: float


# Fitted by benchmarks/cost.py (see SOURCE) over lengths 32..256 at batch 2 and batches 1..8 at length 64 (fp32,
# CPU seconds of the step) on three models: the time exponents are the median of the three, the memory
# exponents the largest (a memory screen that under-predicts lets a run start that cannot finish; every
# power-law prediction of the largest point came out low). SmolLM2's exponents are the smallest (its
# 49k-token output layer is a cost that does not grow with the batch's length). Methods not measured fall back
# to LoRA's curve, the closest in shape (a frozen base, activations dominating). Full fine-tuning's memory
# grows slowly because AdamW's state, a large fixed share, does not grow.
EXPONENTS: dict[str, Exponents] = {
    "full": Exponents(time_length=0.864, time_batch=0.751, memory_length=0.598, memory_batch=0.462),
    "lora": Exponents(time_length=1.013, time_batch=0.914, memory_length=1.197, memory_batch=0.975),
    "qlora": Exponents(time_length=0.972, time_batch=0.904, memory_length=1.147, memory_batch=0.904),
}


def exponents(method: str) -> Exponents:
    """The fitted exponents of `method` (LoRA's for a method that was not measured)."""
    return EXPONENTS.get(method, EXPONENTS["lora"])


def fit_power(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(a, b) of y = a * x ** b, by least squares in log space; needs two distinct positive x."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("a power-law fit needs at least two (x, y) points")
    if min(xs) <= 0 or min(ys) <= 0:
        raise ValueError("a power-law fit needs positive x and y")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    spread = sum((x - mx) ** 2 for x in lx)
    if spread == 0:
        raise ValueError("a power-law fit needs two distinct x")
    b = sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / spread
    return math.exp(my - b * mx), b


def fit_polynomial(xs: Sequence[float], ys: Sequence[float], degree: int) -> tuple[float, ...]:
    """(c0, c1, ..., c_degree) of y = c0 + c1 * x + ... + c_degree * x**degree, by least squares; needs
    degree + 1 distinct x."""
    if len(xs) != len(ys) or len(set(xs)) <= degree:
        raise ValueError(f"a fit of degree {degree} needs at least {degree + 1} distinct x")
    n = degree + 1
    top = max(abs(x) for x in xs) or 1.0  # solve in x / top: the normal equations stay well conditioned
    u = [x / top for x in xs]
    power = [sum(v**k for v in u) for k in range(2 * n - 1)]
    matrix = [[power[i + j] for j in range(n)] + [sum(y * v**i for v, y in zip(u, ys))] for i in range(n)]
    for col in range(n):  # Gaussian elimination with partial pivoting on the normal equations
        pivot = max(range(col, n), key=lambda r: abs(matrix[r][col]))
        matrix[col], matrix[pivot] = matrix[pivot], matrix[col]
        for row in range(n):
            if row != col:
                factor = matrix[row][col] / matrix[col][col]
                matrix[row] = [a - factor * b for a, b in zip(matrix[row], matrix[col])]
    return tuple(matrix[i][n] / matrix[i][i] / top**i for i in range(n))


def held_out_polynomial(xs: Sequence[float], ys: Sequence[float], hold: int, degree: int) -> dict[str, Any]:
    """As `held_out`, for `fit_polynomial` of `degree`."""
    keep = [i for i in range(len(xs)) if i != hold]
    coefficients = fit_polynomial([xs[i] for i in keep], [ys[i] for i in keep], degree)
    predicted = sum(c * xs[hold] ** k for k, c in enumerate(coefficients))
    return {"x": xs[hold], "coefficients": coefficients, "predicted": predicted, "actual": ys[hold],
            "error": relative_error(predicted, ys[hold])}


def fit_affine(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(fixed, per_unit) of y = fixed + per_unit * x, by least squares; needs two distinct x.

    A step has a cost that does not grow with the work (the optimizer over the trained weights, the
    weights held in memory, launching each layer) and one that does; a power law through the small
    points bends that fixed share into its exponent and so under-predicts larger ones."""
    return fit_polynomial(xs, ys, 1)


def fit_quadratic(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """(fixed, per_unit, per_square) of y = fixed + per_unit * x + per_square * x**2, by least squares; needs
    three distinct x.

    Along sequence length a step has, besides a fixed cost and work per token, attention's work per pair of
    tokens (every token scores every other), which grows with the square of the length: small at 64 tokens,
    a large share at 1024. Neither a power law nor a line through the short lengths sees it coming."""
    return fit_polynomial(xs, ys, 2)


def held_out_affine(xs: Sequence[float], ys: Sequence[float], hold: int) -> dict[str, Any]:
    """As `held_out`, for the affine fit."""
    return held_out_polynomial(xs, ys, hold, 1)


def held_out_quadratic(xs: Sequence[float], ys: Sequence[float], hold: int) -> dict[str, Any]:
    """As `held_out`, for the quadratic fit."""
    return held_out_polynomial(xs, ys, hold, 2)


def scale(y0: float, x0: float, x: float, exponent: float) -> float:
    """y at x, from y0 measured at x0, along a power law of this exponent."""
    return y0 * (x / x0) ** exponent


def relative_error(predicted: float, actual: float) -> float:
    """predicted / actual - 1: +0.10 is a prediction 10% too high."""
    return predicted / actual - 1.0


def held_out(xs: Sequence[float], ys: Sequence[float], hold: int) -> dict[str, float]:
    """Fit on every point but `xs[hold]`, predict it; the fit and the prediction's relative error."""
    fit_x = [x for i, x in enumerate(xs) if i != hold]
    fit_y = [y for i, y in enumerate(ys) if i != hold]
    a, b = fit_power(fit_x, fit_y)
    predicted = a * xs[hold] ** b
    return {"x": xs[hold], "a": a, "b": b, "predicted": predicted, "actual": ys[hold],
            "error": relative_error(predicted, ys[hold])}


def predict_step_seconds(seconds: float, at: tuple[int, int], to: tuple[int, int], method: str) -> float:
    """Step seconds at (batch, length) `to`, from `seconds` measured at (batch, length) `at`."""
    e = exponents(method)
    return scale(scale(seconds, at[0], to[0], e.time_batch), at[1], to[1], e.time_length)


def predict_peak_mb(peak_mb: float, before_mb: float, at: tuple[int, int], to: tuple[int, int], method: str) -> float:
    """Peak MB at (batch, length) `to`, from `peak_mb` measured at `at` with `before_mb` held before the step."""
    e = exponents(method)
    added = max(0.0, peak_mb - before_mb)
    return before_mb + scale(scale(added, at[0], to[0], e.memory_batch), at[1], to[1], e.memory_length)
