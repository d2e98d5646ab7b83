"""The multiple-choice task: questions in the Kaggle "LLM Science Exam" layout, an encoder scoring each option.

A file is a CSV with a header naming the columns `id, prompt, A, B, C, D, E, answer`. Columns are
found by name, so any order works; a set may have 2 to 5 option columns, and an option cell may be
empty (that option then does not exist for that row). `answer` is a letter that must name a
non-empty option; files without an `answer` column can be read for prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loralab.errors import LoralabError
from loralab.validate import number
from loralab.metrics import METRICS, ranking
from loralab.models.packed import packed_logits
from loralab.tasks.table import Table, read_table

LETTERS = ("A", "B", "C", "D", "E")


@dataclass(frozen=True)
class Question:
    """One question: its options in letter order, with the letters that name them."""

    id: str
    prompt: str
    letters: tuple[str, ...]
    options: tuple[str, ...]
    answer: int | None  # index into `options`, None when the file has no answers

    @property
    def answer_letter(self) -> str | None:
        return None if self.answer is None else self.letters[self.answer]


def read_questions(path: str | Path, *, require_answer: bool = True, limit: int | None = None,
                   split: str | None = None) -> list[Question]:
    """Read and validate a multiple-choice file; every problem names the file, row and field."""
    number("limit", limit, integer=True, low=1, optional=True)
    table = read_table(path, delimiter=",", what="a multiple-choice CSV file", split=split)
    path, header = table.path, list(table.header)
    column = {name: i for i, name in enumerate(header)}
    letters = tuple(letter for letter in LETTERS if letter in column)
    missing = [name for name in ("prompt",) if name not in column]
    if require_answer and "answer" not in column:
        missing.append("answer")
    if len(letters) < 2:
        missing.append("at least two option columns (A, B, ...)")
    if missing:
        raise LoralabError(f"{path}: missing column(s) {', '.join(missing)} in header {header}")

    questions = []
    for line, row in table.rows:
        qid = row[column["id"]].strip() if "id" in column else str(line - 2)
        prompt = row[column["prompt"]].strip()
        if not prompt:
            raise LoralabError(f"{path}, row {line}, field 'prompt': empty prompt")
        present = [(letter, row[column[letter]].strip()) for letter in letters if row[column[letter]].strip()]
        if len(present) < 2:
            raise LoralabError(f"{path}, row {line}, fields {'/'.join(letters)}: fewer than two non-empty options")
        answer = None
        if "answer" in column:
            given = row[column["answer"]].strip().upper()
            names = [letter for letter, _ in present]
            if given not in names:
                raise LoralabError(
                    f"{path}, row {line}, field 'answer': {row[column['answer']]!r} names no non-empty option "
                    f"(options here: {', '.join(names)})"
                )
            answer = names.index(given)
        questions.append(
            Question(
                id=qid,
                prompt=prompt,
                letters=tuple(letter for letter, _ in present),
                options=tuple(text for _, text in present),
                answer=answer,
            )
        )
        if limit is not None and len(questions) >= limit:
            break
    if not questions:
        raise LoralabError(f"{path}: no questions after the header")
    if require_answer and any(q.answer is None for q in questions):
        raise LoralabError(f"{path}: no 'answer' column; this command needs the correct answers")
    return questions


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


def choice_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor], packed: bool = True) -> torch.Tensor:
    """Scores (batch, choices) with filler choices pushed to the minimum.

    `packed` runs supported encoders on their real tokens only (`loralab.models.packed`), else the model's own forward.
    """
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "choice_mask")}
    logits = packed_logits(model, inputs) if packed else None
    if logits is None:
        logits = model(**inputs).logits  # (batch, choices)
    return logits.masked_fill(~batch["choice_mask"], torch.finfo(logits.dtype).min)


def looks_like(table: Table) -> bool:
    """A file with a prompt and at least two option columns is a multiple-choice file."""
    return table.has("prompt") and sum(letter in table.header for letter in LETTERS) >= 2


class MultipleChoice:
    """Each (prompt, option) pair is scored by the encoder's multiple-choice head; the options compete."""

    name = "multiple-choice"
    metrics = ("map@3", "accuracy", "cross_entropy")
    model_class = "AutoModelForMultipleChoice"

    def read(self, path, config=None, *, labelled: bool = True, limit: int | None = None) -> list[Question]:
        return read_questions(path, require_answer=labelled, limit=limit, split=getattr(config, "split", None))

    def label_space(self, examples, source: str = "") -> dict[str, Any]:
        return {}

    def check_labels(self, examples, space=None, source: str = "") -> list[int]:
        return [-1 if q.answer is None else q.answer for q in examples]  # answers were checked when read

    def model_kwargs(self, space) -> dict[str, Any]:
        return {}

    def encode(self, examples, tokenizer, max_length: int, space=None, source: str = "") -> list[EncodedQuestion]:
        return encode(examples, tokenizer, max_length)

    def collate(self, items, pad_id: int) -> dict[str, torch.Tensor]:
        return collate(items, pad_id)

    def loss(self, model, batch, packed: bool) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(choice_logits(model, batch, packed), batch["labels"])

    def outputs(self, model, batch, packed: bool) -> list[list[float]]:
        logits = choice_logits(model, batch, packed).float().cpu()
        return [row[: int(mask.sum())].tolist() for row, mask in zip(logits, batch["choice_mask"].cpu())]

    def targets(self, items) -> list[int]:
        return [item.label for item in items]

    def scores(self, outputs, targets) -> dict[str, float]:
        return {name: METRICS[name](outputs, targets) for name in self.metrics} | {"questions": len(targets)}

    def predictions(self, examples: Sequence[Question], outputs, space=None):
        """(header, rows) of the Kaggle submission (top three letters) and (header, rows) of every option's score."""
        rows = [[q.id, " ".join(q.letters[i] for i in ranking(s)[:3])] for q, s in zip(examples, outputs)]
        letters = sorted({letter for q in examples for letter in q.letters})
        score_rows = [[q.id] + [f"{dict(zip(q.letters, s)).get(letter, float('nan')):.6f}" for letter in letters]
                      for q, s in zip(examples, outputs)]
        return ["id", "prediction"], rows, ["id"] + letters, score_rows


TASK = MultipleChoice()
