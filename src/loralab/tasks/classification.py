"""Classification and regression of a text or a text pair (the GLUE tasks): an encoder with a
sequence-classification head.

Files are CSV or TSV (GLUE's TSV files are read with quoting off), columns found by the names GLUE
uses (`sentence`; `sentence1`/`sentence2`; `question`/`sentence`; `#1 String`/`#2 String`;
`label`, `Quality`, `score`) or named by the user (`TaskConfig.text`, `.text_pair`, `.label`;
`.columns` names the columns of a file without a header row). Classification labels may be strings
or integers: the label set is taken from the training file, recorded in `run.json`, and predictions
are written back as the original labels. Regression labels are numbers; the head has one output
and the loss is the mean squared error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loralab.errors import LoralabError
from loralab.validate import number
from loralab.metrics import METRICS, ranking
from loralab.tasks.table import Table, read_table

# Column names as GLUE and its sources use them: (first text, second text) pairs, then single texts.
PAIRS = (("sentence1", "sentence2"), ("question", "sentence"), ("#1 String", "#2 String"),
         ("question1", "question2"), ("premise", "hypothesis"), ("text_a", "text_b"))
SINGLES = ("sentence", "text")
LABELS = ("label", "Quality", "score", "labels")
IDS = ("id", "idx", "index")


@dataclass(frozen=True)
class Example:
    """One text (or pair) and its label as written in the file (None when the file has none)."""

    id: str
    text: str
    text_pair: str | None
    label: str | None
    line: int


@dataclass(frozen=True)
class EncodedExample:
    features: dict[str, tuple[int, ...]]
    target: float | int  # class index or value; -1 when unknown

    @property
    def longest(self) -> int:
        return len(self.features["input_ids"])


@dataclass(frozen=True)
class Columns:
    text: str
    text_pair: str | None
    label: str | None
    id: str | None


def _table(path: str | Path, config) -> Table:
    names = tuple(config.columns) if config is not None else ()
    return read_table(path, names=names or None, what="a classification file", split=getattr(config, "split", None))


def find_columns(table: Table, config, *, labelled: bool) -> Columns:
    """The text, pair, label and id columns: the user's names, else GLUE's."""
    def pick(given: str | None, candidates: Sequence[str], what: str) -> str | None:
        if given is not None:
            if given not in table.header:
                raise LoralabError(f"{table.path}: no column named {given!r} ({what}); columns: {list(table.header)}")
            return given
        return next((c for c in candidates if c in table.header), None)

    text, pair = config.text if config else None, config.text_pair if config else None
    if text is None and pair is None:
        found = next((p for p in PAIRS if table.has(*p)), None)
        text, pair = found if found else (pick(None, SINGLES, "text"), None)
    text = pick(text, SINGLES, "text")
    pair = pick(pair, (), "second text")
    if text is None:
        raise LoralabError(f"{table.path}: no text column (expected one of {', '.join(SINGLES)}, a GLUE pair such as "
                           f"sentence1/sentence2, or --text-column); columns: {list(table.header)}")
    label = pick(config.label if config else None, LABELS, "label")
    if labelled and label is None:
        raise LoralabError(f"{table.path}: no label column (expected one of {', '.join(LABELS)}, or --label-column); "
                           f"columns: {list(table.header)}")
    return Columns(text, pair, label, next((c for c in IDS if c in table.header), None))


def read_examples(path: str | Path, config=None, *, labelled: bool = True, limit: int | None = None) -> list[Example]:
    """Read and check a classification or regression file; every problem names the file, row and field."""
    number("limit", limit, integer=True, low=1, optional=True)
    table = _table(path, config)
    cols = find_columns(table, config, labelled=labelled)
    at = {name: table.header.index(name) for name in (cols.text, cols.text_pair, cols.label, cols.id) if name}
    examples = []
    for index, (line, row) in enumerate(table.rows):
        text = row[at[cols.text]].strip()
        if not text:
            raise LoralabError(f"{table.path}, row {line}, field {cols.text!r}: empty text")
        pair = row[at[cols.text_pair]].strip() if cols.text_pair else None
        if cols.text_pair and not pair:
            raise LoralabError(f"{table.path}, row {line}, field {cols.text_pair!r}: empty text")
        label = row[at[cols.label]].strip() if cols.label and labelled else None  # predict ignores labels
        if labelled and not label:
            raise LoralabError(f"{table.path}, row {line}, field {cols.label!r}: empty label")
        examples.append(Example(row[at[cols.id]].strip() if cols.id else str(index), text, pair, label or None, line))
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise LoralabError(f"{table.path}: no examples after the header")
    return examples


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _refuse_non_finite(examples: Sequence[Example], path) -> None:
    """Labels that are all numbers but one nan or inf: a regression file with a broken row, which
    would otherwise be read as classification with every distinct value a class."""
    parsed = []
    for e in examples:
        try:
            parsed.append(float(e.label))
        except (TypeError, ValueError):
            return  # words among the labels: classification, where "nan" may be a class name
    for e, value in zip(examples, parsed):
        if not math.isfinite(value):
            raise LoralabError(f"{path}, row {e.line}: label {e.label!r} is not a finite number "
                               "(the other labels are numbers)")


def infer(path: str | Path, config) -> str:
    """classification or regression: numbers that are not all whole are a regression target."""
    examples = read_examples(path, config)
    _refuse_non_finite(examples, path)
    values = [_number(e.label) for e in examples]
    if all(v is not None for v in values) and any(not float(v).is_integer() for v in values):
        return "regression"
    return "classification"


def _sorted_labels(labels: set[str]) -> list[str]:
    """Integers in numeric order (so "0" before "1" before "10"), other labels alphabetically."""
    if all(_number(label) is not None and float(label).is_integer() for label in labels):
        return sorted(labels, key=float)
    return sorted(labels)


def _encode(examples: Sequence[Example], tokenizer, max_length: int, targets: list) -> list[EncodedExample]:
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples]
    tokens = (tokenizer(texts, pairs, truncation="longest_first", max_length=max_length) if any(pairs)
              else tokenizer(texts, truncation=True, max_length=max_length))
    names = [name for name in ("input_ids", "token_type_ids") if name in tokens]
    return [EncodedExample({name: tuple(tokens[name][i]) for name in names}, targets[i]) for i in range(len(examples))]


def _collate(items: list[EncodedExample], pad_id: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    batch, seq = len(items), max(item.longest for item in items)
    input_ids = torch.full((batch, seq), pad_id, dtype=torch.long)  # (batch, seq)
    attention_mask = torch.zeros((batch, seq), dtype=torch.long)
    token_type_ids = torch.zeros((batch, seq), dtype=torch.long)
    for b, item in enumerate(items):
        ids = item.features["input_ids"]
        input_ids[b, : len(ids)] = torch.tensor(ids)
        attention_mask[b, : len(ids)] = 1
        if "token_type_ids" in item.features:
            token_type_ids[b, : len(ids)] = torch.tensor(item.features["token_type_ids"])
    out = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in items[0].features:
        out["token_type_ids"] = token_type_ids
    out["labels"] = torch.tensor([item.target for item in items], dtype=dtype)
    return out


def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (batch, labels)


class Classification:
    """One logit per label; cross-entropy; accuracy, F1 of the positive class, Matthews correlation."""

    name = "classification"
    metrics = ("accuracy", "f1", "mcc", "cross_entropy")
    model_class = "AutoModelForSequenceClassification"

    def read(self, path, config=None, *, labelled: bool = True, limit: int | None = None) -> list[Example]:
        return read_examples(path, config, labelled=labelled, limit=limit)

    def label_space(self, examples, source: str = "") -> dict[str, Any]:
        labels = _sorted_labels({e.label for e in examples if e.label is not None})
        if len(labels) < 2:
            raise LoralabError(f"{source or 'the training data'}: {len(labels)} label(s) ({', '.join(labels)}); "
                               "classification needs at least two")
        return {"labels": labels}

    def check_labels(self, examples, space, source: str = "") -> list[int]:
        """Each example's class index (-1 without a label); a label outside the space names its row."""
        index = {label: i for i, label in enumerate(space["labels"])}
        targets = []
        for e in examples:
            if e.label is not None and e.label not in index:
                raise LoralabError(f"{source}, row {e.line}: label {e.label!r} is not one the model was trained on "
                                   f"({', '.join(space['labels'])})")
            targets.append(-1 if e.label is None else index[e.label])
        return targets

    def model_kwargs(self, space) -> dict[str, Any]:
        labels = space["labels"]
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {label: i for i, label in enumerate(labels)}}

    def encode(self, examples, tokenizer, max_length: int, space, source: str = "") -> list[EncodedExample]:
        return _encode(examples, tokenizer, max_length, self.check_labels(examples, space, source))

    def collate(self, items, pad_id: int) -> dict[str, torch.Tensor]:
        return _collate(items, pad_id, torch.long)

    def loss(self, model, batch, packed: bool) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(_logits(model, batch), batch["labels"])

    def outputs(self, model, batch, packed: bool) -> list[list[float]]:
        return _logits(model, batch).float().cpu().tolist()

    def targets(self, items) -> list[int]:
        return [item.target for item in items]

    def scores(self, outputs, targets) -> dict[str, float]:
        return {name: METRICS[name](outputs, targets) for name in self.metrics} | {"examples": len(targets)}

    def predictions(self, examples, outputs, space):
        labels = space["labels"]
        rows = [[e.id, labels[ranking(o)[0]]] for e, o in zip(examples, outputs)]
        score_rows = [[e.id] + [f"{v:.6f}" for v in o] for e, o in zip(examples, outputs)]
        return ["id", "prediction"], rows, ["id"] + labels, score_rows


class Regression:
    """One output; mean squared error; Pearson and Spearman correlation (STS-B)."""

    name = "regression"
    metrics = ("pearson", "spearman", "mse")
    model_class = "AutoModelForSequenceClassification"

    def read(self, path, config=None, *, labelled: bool = True, limit: int | None = None) -> list[Example]:
        return read_examples(path, config, labelled=labelled, limit=limit)

    def label_space(self, examples, source: str = "") -> dict[str, Any]:
        return {}

    def check_labels(self, examples, space=None, source: str = "") -> list[float]:
        """Each example's value (-1 without a label); a label that is not a number names its row."""
        targets = []
        for e in examples:
            value = None if e.label is None else _number(e.label)
            if e.label is not None and value is None:
                raise LoralabError(f"{source}, row {e.line}: label {e.label!r} is not a finite number (regression)")
            targets.append(-1.0 if value is None else value)
        return targets

    def model_kwargs(self, space) -> dict[str, Any]:
        return {"num_labels": 1, "problem_type": "regression"}

    def encode(self, examples, tokenizer, max_length: int, space=None, source: str = "") -> list[EncodedExample]:
        return _encode(examples, tokenizer, max_length, self.check_labels(examples, space, source))

    def collate(self, items, pad_id: int) -> dict[str, torch.Tensor]:
        return _collate(items, pad_id, torch.float32)

    def loss(self, model, batch, packed: bool) -> torch.Tensor:
        return torch.nn.functional.mse_loss(_logits(model, batch).squeeze(-1), batch["labels"])

    def outputs(self, model, batch, packed: bool) -> list[list[float]]:
        return _logits(model, batch).float().cpu().tolist()  # (batch, 1)

    def targets(self, items) -> list[float]:
        return [item.target for item in items]

    def scores(self, outputs, targets) -> dict[str, float]:
        return {name: METRICS[name](outputs, targets) for name in self.metrics} | {"examples": len(targets)}

    def predictions(self, examples, outputs, space=None):
        rows = [[e.id, f"{o[0]:.6f}"] for e, o in zip(examples, outputs)]
        return ["id", "prediction"], rows, [], []


CLASSIFICATION = Classification()
REGRESSION = Regression()
