"""Metrics as pure functions of per-example model outputs and the true labels; the one table of them.

- MAP@k as scored in the Kaggle LLM Science Exam: each question has one correct answer, so its
  average precision is 1 / rank of that answer when it is among the top k predictions, else 0.
- Classification as GLUE reports it: accuracy, F1 of the positive class (the second label of a
  binary task, as MRPC's "1"), Matthews correlation (CoLA; Matthews 1975, in its multi-class form
  by Gorodkin 2004).
- Regression: Pearson and Spearman correlation (STS-B), mean squared error.
- Completions: cross-entropy per completion token and its perplexity.
- Choices (classification, multiple choice): the cross-entropy of the softmax over an example's scores,
  what training minimises. Each task's loss on validation data (`validation_loss`) is continuous where its
  other metrics are steps: it tells apart pilots that all predict the majority class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def ranking(scores: Sequence[float]) -> list[int]:
    """Option indices from best to worst; ties keep the earlier option first."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def _check(outputs: Sequence, labels: Sequence) -> None:
    if len(outputs) != len(labels) or not labels:
        raise ValueError(f"need one label per example and at least one example, got {len(outputs)} and {len(labels)}")


def map_at_k(scores: Sequence[Sequence[float]], labels: Sequence[int], k: int = 3) -> float:
    _check(scores, labels)
    total = 0.0
    for option_scores, label in zip(scores, labels):
        top = ranking(option_scores)[:k]
        total += 1.0 / (top.index(label) + 1) if label in top else 0.0
    return total / len(labels)


def accuracy(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    return map_at_k(scores, labels, k=1)


def _predictions(scores: Sequence[Sequence[float]]) -> list[int]:
    return [ranking(row)[0] for row in scores]


def f1(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    """F1 of class 1 (the positive class of a binary task); macro-averaged over classes otherwise."""
    _check(scores, labels)
    predicted = _predictions(scores)
    classes = [1] if len(scores[0]) == 2 else sorted(set(labels) | set(predicted))
    values = []
    for c in classes:
        tp = sum(p == c and y == c for p, y in zip(predicted, labels))
        fp = sum(p == c and y != c for p, y in zip(predicted, labels))
        fn = sum(p != c and y == c for p, y in zip(predicted, labels))
        values.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(values) / len(values)


def mcc(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    """Matthews correlation coefficient over K classes (0 when a side is constant, as sklearn)."""
    _check(scores, labels)
    predicted = _predictions(scores)
    n = len(labels)
    classes = sorted(set(labels) | set(predicted))
    correct = sum(p == y for p, y in zip(predicted, labels))
    t = {c: sum(y == c for y in labels) for c in classes}
    p = {c: sum(q == c for q in predicted) for c in classes}
    numerator = correct * n - sum(t[c] * p[c] for c in classes)
    denominator = math.sqrt(n * n - sum(v * v for v in p.values())) * math.sqrt(n * n - sum(v * v for v in t.values()))
    return numerator / denominator if denominator else 0.0


def pearson(values: Sequence[Sequence[float]], labels: Sequence[float]) -> float | None:
    """Pearson's r; None (undefined) when every label is the same, 0 when every prediction is (as before)."""
    _check(values, labels)
    x, y = [float(v[0]) for v in values], [float(t) for t in labels]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if not syy:
        return None  # a correlation with a constant is no number: reported as undefined, never as 0
    return sxy / math.sqrt(sxx * syy) if sxx else 0.0


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(values: Sequence[Sequence[float]], labels: Sequence[float]) -> float | None:
    _check(values, labels)
    return pearson([[r] for r in _ranks([float(v[0]) for v in values])], _ranks([float(t) for t in labels]))


def mse(values: Sequence[Sequence[float]], labels: Sequence[float]) -> float:
    _check(values, labels)
    return sum((float(v[0]) - float(t)) ** 2 for v, t in zip(values, labels)) / len(labels)


def cross_entropy(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    """Mean of -log softmax(scores)[label] over the examples, in nats: the training loss of a choice task."""
    _check(scores, labels)
    total = 0.0
    for row, label in zip(scores, labels):
        top = max(row)
        total += top + math.log(sum(math.exp(v - top) for v in row)) - row[label]
    return total / len(labels)


def token_loss(outputs: Sequence[Sequence[float]], labels=None) -> float:
    """Cross-entropy per token over all examples, each output being [sum of its tokens' losses, tokens]."""
    tokens = sum(o[1] for o in outputs)
    return sum(o[0] for o in outputs) / tokens if tokens else float("nan")


def perplexity(outputs: Sequence[Sequence[float]], labels=None) -> float:
    """exp(cross-entropy per token): the number of equally likely tokens the model hesitates between."""
    return math.exp(min(token_loss(outputs), 700.0))


def shown(value: float | None) -> str:
    """A metric's value as printed: four decimals, or "undefined" (a correlation over constant labels)."""
    return "undefined" if value is None else f"{value:.4f}"


@dataclass(frozen=True)
class Metric:
    """A metric's function of (outputs, labels) and whether higher is better."""

    function: object
    higher_is_better: bool = True
    label: str = ""

    def __call__(self, outputs, labels) -> float:
        return self.function(outputs, labels)


METRICS: dict[str, Metric] = {
    "map@3": Metric(lambda s, y: map_at_k(s, y, 3), label="MAP@3"),
    "accuracy": Metric(accuracy, label="accuracy"),
    "f1": Metric(f1, label="F1"),
    "mcc": Metric(mcc, label="Matthews corr."),
    "pearson": Metric(pearson, label="Pearson"),
    "spearman": Metric(spearman, label="Spearman"),
    "mse": Metric(mse, higher_is_better=False, label="MSE"),
    "perplexity": Metric(perplexity, higher_is_better=False, label="perplexity"),
    "loss": Metric(token_loss, higher_is_better=False, label="loss"),
    "cross_entropy": Metric(cross_entropy, higher_is_better=False, label="cross-entropy"),
}

LOSSES = ("cross_entropy", "mse", "loss")
"""The metric of each task that is its training loss on the validation examples: choices, regression,
completions."""


def validation_loss(valid: dict) -> float | None:
    """A run record's validation loss (`LOSSES`), None when it reports none (a record from before choice
    tasks reported their cross-entropy) or it is not a finite number."""
    for name in LOSSES:
        value = valid.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) if math.isfinite(value) else None
    return None
