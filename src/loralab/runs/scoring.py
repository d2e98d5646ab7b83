"""Scoring a data file with a trained run, a peft adapter or a base model as it is (zero-shot): what
`evaluate` and `predict` share. The data is read before the model loads, so a bad file is refused at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.errors import LoralabError
from loralab.models import is_decoder, pad_token_id
from loralab.runs.artifacts import RECORD
from loralab.runs.record import read_record
from loralab.runs.one_run import LoadedRun, load_adapter, load_base, load_run
from loralab.settings import RunConfig, TaskConfig
from loralab.tasks import get_task, resolve_scoring
from loralab.training import score
from loralab.validate import number


@dataclass
class Scored:
    """A model's outputs on a data file, with what produced them."""

    loaded: LoadedRun
    examples: list[Any]
    items: list[Any]
    outputs: list[list[float]]

    def metrics(self) -> dict[str, float]:
        """The task's metrics of these outputs (the file must hold labels)."""
        return self.loaded.task.scores(self.outputs, self.loaded.task.targets(self.items))

    def predictions(self):
        """(header, rows, score header, score rows) as the task writes predictions."""
        return self.loaded.task.predictions(self.examples, self.outputs, self.loaded.space)


def score_file(data: str | Path, *, run: str | Path | None = None, adapter: str | Path | None = None,
               model: str | None = None, task: TaskConfig | None = None, labelled: bool = True,
               scoring: str | None = None, batch_size: int = 32, max_length: int = 256, device: str = "auto",
               progress: bool = True) -> Scored:
    """Score `data` with a run folder, a peft adapter (on `model`, else its own base), or `model` alone.

    `scoring` scores a trained multiple-choice model's options another way (letter or likelihood);
    `max_length` applies to a base model alone (a run keeps its own)."""
    task = task or TaskConfig()
    number("--batch-size", batch_size, integer=True, low=1)
    if adapter:
        loaded = load_adapter(adapter, model=model, device=device)
        examples = loaded.task.read(data, loaded.config.task, labelled=labelled)
    elif run:
        if not Path(run).is_dir():
            raise LoralabError(f"{run}: no such run folder")
        record = read_record(Path(run) / RECORD)
        reader = get_task(record.get("task", "multiple-choice"), record.get("scoring"))
        config = RunConfig.from_dict(record["config"]) if isinstance(record.get("config"), dict) else RunConfig(train="")
        examples = reader.read(data, config.task, labelled=labelled)
        loaded = load_run(run, device=device)
    elif model:
        number("--max-length", max_length, integer=True, low=8)
        loaded = load_base(model, data, task, device=device, max_length=max_length)
        examples = loaded.task.read(data, loaded.config.task, labelled=labelled)
    else:
        raise LoralabError("give --run (a trained run), --adapter (a peft adapter) or --model (a base model, zero-shot)")
    if scoring and (run or adapter):
        name = loaded.task.name  # the same trained model, its options scored another way
        loaded.task = get_task(name, resolve_scoring(name, scoring, is_decoder(loaded.model)))
    items = loaded.task.encode(examples, loaded.tokenizer, loaded.config.training.max_length, loaded.space, source=str(data))
    outputs = score(loaded.model, items, task=loaded.task, pad_id=pad_token_id(loaded.tokenizer), batch_size=batch_size,
                    device=loaded.device, progress=progress)
    return Scored(loaded, examples, items, outputs)
