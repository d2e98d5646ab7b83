"""Tokenize questions once, then batch them padded only to the longest sequence in each batch.

A batch is a dict of tensors shaped (batch, choices, seq), the layout of Hugging Face
`*ForMultipleChoice` models, plus `labels` (batch,) and `choice_mask` (batch, choices): questions
with fewer options than the widest one in the batch get filler choices that are masked out of the
scores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from loralab.data.multiple_choice import Question


@dataclass(frozen=True)
class EncodedQuestion:
    """A question's options as token ids, one sequence per option."""

    features: dict[str, tuple[tuple[int, ...], ...]]  # name -> one id sequence per option
    label: int  # -1 when unknown

    @property
    def num_choices(self) -> int:
        return len(self.features["input_ids"])

    @property
    def longest(self) -> int:
        return max(len(ids) for ids in self.features["input_ids"])

    @property
    def num_tokens(self) -> int:
        return sum(len(ids) for ids in self.features["input_ids"])


def encode(questions: Sequence[Question], tokenizer, max_length: int) -> list[EncodedQuestion]:
    """Tokenize each (prompt, option) pair, truncating the prompt first when too long."""
    firsts = [q.prompt for q in questions for _ in q.options]
    seconds = [option for q in questions for option in q.options]
    tokens = tokenizer(firsts, seconds, truncation="longest_first", max_length=max_length)
    names = [name for name in ("input_ids", "token_type_ids") if name in tokens]
    encoded, start = [], 0
    for q in questions:
        stop = start + len(q.options)
        features = {name: tuple(tuple(ids) for ids in tokens[name][start:stop]) for name in names}
        encoded.append(EncodedQuestion(features, -1 if q.answer is None else q.answer))
        start = stop
    return encoded


def collate(items: Sequence[EncodedQuestion], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence and the widest question in this batch only (dynamic padding)."""
    batch, choices = len(items), max(item.num_choices for item in items)
    seq = max(item.longest for item in items)
    input_ids = torch.full((batch, choices, seq), pad_id, dtype=torch.long)  # (batch, choices, seq)
    attention_mask = torch.zeros((batch, choices, seq), dtype=torch.long)
    token_type_ids = torch.zeros((batch, choices, seq), dtype=torch.long)
    choice_mask = torch.zeros((batch, choices), dtype=torch.bool)
    has_types = "token_type_ids" in items[0].features
    for b, item in enumerate(items):
        for c in range(choices):
            if c >= item.num_choices:
                # A filler choice: one real token keeps attention well defined; its score is masked.
                input_ids[b, c, 0] = item.features["input_ids"][0][0]
                attention_mask[b, c, 0] = 1
                continue
            ids = item.features["input_ids"][c]
            input_ids[b, c, : len(ids)] = torch.tensor(ids)
            attention_mask[b, c, : len(ids)] = 1
            if has_types:
                token_type_ids[b, c, : len(ids)] = torch.tensor(item.features["token_type_ids"][c])
            choice_mask[b, c] = True
    out = {"input_ids": input_ids, "attention_mask": attention_mask}
    if has_types:
        out["token_type_ids"] = token_type_ids
    out["labels"] = torch.tensor([item.label for item in items])
    out["choice_mask"] = choice_mask
    return out


def batches(
    items: Sequence[EncodedQuestion],
    batch_size: int,
    pad_id: int,
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
        yield collate([items[i] for i in chunk], pad_id)
