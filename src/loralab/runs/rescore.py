"""A run trained already, scored again into a run folder of its own: a final run that a pilot trained step for step.

A comparison's pilot at the last rung of its bracket can train exactly what a final run trains: the same
settings, data, seed and number of steps (a bracket that fills its share reaches the final run's length). Its
training was measured bit for bit the same (STS-B, `stsb-seeded`: the loss at every step of LoRA's two
250-step pilots equals that of the final runs with their seeds); only the scoring differs, a pilot's on the
first validation examples, a final run's on all of them. `rescore` writes such a final run from the pilot:
the pilot's weights, its record with the final run's configuration, and the final run's validation scores,
computed from the weights as `train_run` computes them after training. The record says where it was trained
(`trained_in`, relative to the run's own folder) and what the scoring cost (`rescore_seconds`); its training
time, peak memory and losses are the pilot's, which trained it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from loralab.errors import LoralabError
from loralab.models import pad_token_id, recorded_model
from loralab.runs.artifacts import RECORD, WEIGHTS, file_sha256, remove_leftovers, temporary_prefix, write_json
from loralab.runs.config import RunConfig
from loralab.runs.one_run import data_identity, load_run
from loralab.training import evaluate


def rescore(source: str | Path, config: RunConfig, out_dir: str | Path, *, progress: bool = False,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write `out_dir` as the run `config` describes, from `source`, a finished run that trained it step for
    step (the caller knows: `comparison.state.Comparison.trained_final`); returns its record. The weights are
    copied before the record is written, so a kill leaves a folder that a rerun redoes."""
    source, out_dir = Path(source), Path(out_dir)
    start = time.perf_counter()
    loaded = load_run(source, device=config.device)
    previous = loaded.record
    weights = source / previous.get("weights", WEIGHTS)
    config = dataclasses.replace(config, model=recorded_model(config.model))
    if not config.valid:
        raise LoralabError(f"{source}: rescoring needs a validation file")
    task = loaded.task
    examples = task.read(config.valid, config.task, limit=config.valid_limit)
    items = task.encode(examples, loaded.tokenizer, config.training.max_length, loaded.space, source=config.valid)
    valid = evaluate(loaded.model, items, task=task, pad_id=pad_token_id(loaded.tokenizer),
                     batch_size=config.training.eval_batch_size, device=loaded.device, progress=progress,
                     packed=config.training.packed, precision=config.training.precision)
    valid["path"] = str(config.valid)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    tmp = out_dir / f"{temporary_prefix(WEIGHTS)}rescored.tmp"  # a name `remove_leftovers` knows
    shutil.copyfile(weights, tmp)
    tmp.replace(out_dir / WEIGHTS)
    record = {**previous,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "hyperparameters": config.flat(), "config": config.to_dict(), "data": data_identity(config),
              "weights": WEIGHTS, "weights_sha256": file_sha256(out_dir / WEIGHTS), "valid": valid,
              "trained_in": os.path.relpath(source, out_dir), "rescore_seconds": round(time.perf_counter() - start, 3)}
    write_json(out_dir / RECORD, record)
    log(f"trained in {source} (the same settings, data, seed and steps); scored on {len(items)} validation examples")
    return record
