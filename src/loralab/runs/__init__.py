"""A run on disk: its configuration (`config.py`), one run end to end (`one_run.py`), the run folder's
record and weights (`artifacts.py`), whether a folder already holds a finished run (`state.py`),
merging a run into a plain model (`merge.py`) and peft adapters in and out (`peft.py`)."""

from loralab.runs.one_run import (LoadedRun, data_identity, load_adapter, load_base, load_run, resolve_device, run,
                                  run_task, sample, task_model)

__all__ = ["LoadedRun", "data_identity", "load_adapter", "load_base", "load_run", "resolve_device", "run", "run_task",
           "sample", "task_model"]
