"""Tasks: what the data is and how a model is scored on it, one module each.

A task owns reading its files (by column name, through the one tabular reader `tasks.table`),
encoding examples for the model, the model's head, the loss, turning model outputs into metrics,
and writing predictions. The training loop and the strategies never look inside a task; a run
records which task it was, so it can be rebuilt from its record.

| task | data | head | loss | metrics |
|---|---|---|---|---|
| `multiple-choice` | `prompt, A..E, answer` | one score per option | cross-entropy over options | MAP@3, accuracy, cross-entropy |
| `classification` | a text or a pair, a label | one logit per label | cross-entropy | accuracy, F1, Matthews corr., cross-entropy |
| `regression` | a text or a pair, a number | one output | mean squared error | Pearson, Spearman, MSE |
| `completion` | JSONL: `prompt, completion` or chat `messages` | a decoder's own LM head | cross-entropy of the completion's tokens | perplexity, loss |

A decoder language model scores multiple choice without a new head (`tasks.decoder_choice`): by
the next-token logits of the option letters (`letter`, its default) or by each option's
length-normalised log-likelihood (`likelihood`); an encoder scores with its head (`head`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch

from loralab.errors import LoralabError
from loralab.validate import SettingError

from loralab.settings.task import AUTO, SCORINGS, TASK_NAMES, TaskConfig




class Task(Protocol):
    """What every task module provides (duck-typed: the modules do not inherit from anything)."""

    name: str
    metrics: tuple[str, ...]  # the first is the headline metric
    model_class: str  # the transformers Auto class whose head fits the task

    def read(self, path: str | Path, config: TaskConfig, *, labelled: bool = True,
             limit: int | None = None) -> list[Any]: ...

    def label_space(self, examples: Sequence[Any], source: str = "") -> dict[str, Any]: ...

    def check_labels(self, examples: Sequence[Any], space: dict[str, Any], source: str = "") -> list[Any]: ...

    def model_kwargs(self, space: dict[str, Any]) -> dict[str, Any]: ...

    def encode(self, examples: Sequence[Any], tokenizer, max_length: int, space: dict[str, Any],
               source: str = "") -> list[Any]: ...

    def collate(self, items: list[Any], pad_id: int) -> dict[str, torch.Tensor]: ...

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], packed: bool) -> torch.Tensor: ...

    def outputs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], packed: bool) -> list[list[float]]: ...

    def targets(self, items: Sequence[Any]) -> list[Any]: ...

    def scores(self, outputs: Sequence[Sequence[float]], targets: Sequence[Any]) -> dict[str, float]: ...

    def predictions(self, examples: Sequence[Any], outputs: Sequence[Sequence[float]],
                    space: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]]]: ...




def get_task(name: str, scoring: str | None = None) -> Task:
    """The task module's object for a task name; multiple choice by `scoring` (None: with a head)."""
    from loralab.tasks import classification, completion, decoder_choice, multiple_choice

    table: dict[str, Task] = {
        "multiple-choice": multiple_choice.TASK,
        "classification": classification.CLASSIFICATION,
        "regression": classification.REGRESSION,
        "completion": completion.TASK,
    }
    if name not in table:
        raise LoralabError(f"unknown task {name!r}; choose one of {', '.join(table)}")
    if name == "multiple-choice" and scoring in ("letter", "likelihood"):
        return decoder_choice.LETTER if scoring == "letter" else decoder_choice.LIKELIHOOD
    return table[name]


def resolve_scoring(name: str, scoring: str, decoder: bool) -> str | None:
    """The scoring a run of task `name` uses on an encoder or a decoder; an error where they do not fit."""
    if name == "multiple-choice":
        chosen = ("letter" if decoder else "head") if scoring == AUTO else scoring
        if decoder and chosen == "head":
            raise LoralabError("scoring 'head' needs an encoder; a decoder scores multiple choice by 'letter' or 'likelihood'")
        if not decoder and chosen != "head":
            raise LoralabError(f"scoring {chosen!r} needs a decoder language model; an encoder scores with its head")
        return chosen
    if scoring != AUTO:
        raise LoralabError(f"scoring {scoring!r} applies to multiple choice only, not to {name}")
    if name == "completion" and not decoder:
        raise LoralabError("the completion task needs a decoder language model (Llama, Qwen2, Gemma, Phi-3, GPT-2 ...)")
    return None


def infer_task(path: str | Path, config: TaskConfig) -> str:
    """The task a training file is, from its columns (and, for labels, their values); `config.name`
    when it is not auto."""
    if config.name != AUTO:
        return config.name
    from loralab.tasks import classification, multiple_choice

    if Path(path).suffix.lower() in (".jsonl", ".json", ".parquet") or Path(path).is_dir():
        from loralab.tasks.table import Table, read_records

        keys = tuple(dict.fromkeys(k for _, record in read_records(path, split=config.split) for k in record))
        if "messages" in keys or "completion" in keys:
            return "completion"
        if multiple_choice.looks_like(Table(Path(path), keys, ())):
            return "multiple-choice"
        if not (set(classification.LABELS) & set(keys) or config.label):
            return "completion"  # what the completion reader then says is missing
    elif not config.columns:
        table = _header_only(path)
        if multiple_choice.looks_like(table):
            return "multiple-choice"
    return classification.infer(path, config)


def _header_only(path: str | Path):
    from loralab.tasks.table import read_table

    return read_table(path)


def check_data(config, checked: dict | None = None) -> str:
    """Read a run's training and validation files with its task, so a bad row is refused before
    anything runs; returns the task's name. `checked` remembers the files already read (a sweep's
    runs mostly share their data), so each is read once."""
    checked = {} if checked is None else checked
    key = (config.train, config.valid, config.task)
    if key not in checked:
        name = infer_task(config.train, config.task)
        task = get_task(name)
        train = task.read(config.train, config.task)
        space = task.label_space(train, source=config.train)
        task.check_labels(train, space, source=config.train)
        if config.valid:
            task.check_labels(task.read(config.valid, config.task), space, source=config.valid)
        checked[key] = name
    return checked[key]
