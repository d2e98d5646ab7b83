"""Batches for every task: examples of similar length together, padded only to their batch's longest.

`batches` orders encoded examples (each with a `.longest` token count) into batches and hands each
batch to a `collate` function (the task's own), which pads it into tensors. The training loop owns
the order; the task owns what a batch holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch


def batches(
    items: Sequence[Any],
    batch_size: int,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    group_by_length: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield collated batches; `group_by_length` sorts within shuffled windows to cut padding."""
    order = torch.randperm(len(items), generator=generator).tolist() if shuffle else list(range(len(items)))
    if group_by_length:
        # Sort inside windows of 50 batches, then shuffle the batches: little padding, still random.
        window = batch_size * 50
        order = [i for s in range(0, len(order), window) for i in sorted(order[s : s + window], key=lambda i: items[i].longest)]
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if group_by_length and shuffle:
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]
    for chunk in chunks:
        yield collate([items[i] for i in chunk])
