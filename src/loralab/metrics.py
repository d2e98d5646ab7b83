"""Metrics as pure functions of per-question option scores and the correct option.

MAP@k as scored in the Kaggle LLM Science Exam: each question has one correct answer, so its
average precision is 1 / rank of that answer when it is among the top k predictions, else 0.
"""

from __future__ import annotations

from collections.abc import Sequence


def ranking(scores: Sequence[float]) -> list[int]:
    """Option indices from best to worst; ties keep the earlier option first."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def map_at_k(scores: Sequence[Sequence[float]], labels: Sequence[int], k: int = 3) -> float:
    if len(scores) != len(labels) or not labels:
        raise ValueError(f"need one label per question and at least one question, got {len(scores)} and {len(labels)}")
    total = 0.0
    for option_scores, label in zip(scores, labels):
        top = ranking(option_scores)[:k]
        total += 1.0 / (top.index(label) + 1) if label in top else 0.0
    return total / len(labels)


def accuracy(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    return map_at_k(scores, labels, k=1)
