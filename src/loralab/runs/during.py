"""What a run does between optimizer steps: evaluate, stop early, remember the best weights, checkpoint.

`DuringTraining` is the step hook `loralab.runs.one_run.run` hands the loop (`training.interface.StepHook`).
Every `eval_every` steps (and at the last) it scores the first `eval_limit` validation examples and
adds the metrics to the run's curve; the best headline metric's weights are kept in memory (and in
each checkpoint), and `early_stopping` evaluations in a row without a better one stop training.
Every `checkpoint_every` steps it writes a checkpoint (`runs/checkpoint.py`) holding the loop's
snapshot and its own state, so a resumed run evaluates, stops and keeps exactly as an unbroken one.
Trackers (`runs/trackers.py`) hear of every step and evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from loralab.metrics import METRICS
from loralab.runs.checkpoint import save_checkpoint
from loralab.settings.training import TrainConfig
from loralab.training.interface import Step

BEST = "best/"


class DuringTraining:
    """The run's step hook; `curve`, `best_step` and `stopped` are what the record keeps of it."""

    def __init__(self, training: TrainConfig, out_dir: Path, *, metric: str,
                 evaluate: Callable[[], dict[str, float]] | None, weights: Callable[[], dict[str, torch.Tensor]],
                 log: Callable[[str], None] = print, write: bool = True, trackers: Sequence[Any] = ()):
        self.training, self.out_dir, self.metric = training, Path(out_dir), metric
        self.evaluate, self.weights, self.log, self.write, self.trackers = evaluate, weights, log, write, trackers
        self.curve: list[dict[str, Any]] = []
        self.best_step: int | None = None
        self.best_value: float | None = None
        self.bad = 0  # evaluations in a row without a better metric
        self.best_weights: dict[str, torch.Tensor] | None = None

    @property
    def keep_best(self) -> bool:
        keep = self.training.keep
        return bool(self.training.eval_every and self.evaluate) if keep == "auto" else keep == "best"

    def state(self) -> dict[str, Any]:
        return {"curve": self.curve, "best_step": self.best_step, "best_value": self.best_value, "bad": self.bad}

    def restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Go on from a checkpoint's hook state and best weights."""
        self.curve = list(state.get("curve", []))
        self.best_step, self.best_value, self.bad = state.get("best_step"), state.get("best_value"), state.get("bad", 0)
        best = {k[len(BEST):]: v for k, v in tensors.items() if k.startswith(BEST)}
        self.best_weights = best or None

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        higher = METRICS[self.metric].higher_is_better if self.metric in METRICS else True
        return value > self.best_value if higher else value < self.best_value

    def _evaluate(self, step: Step) -> bool:
        """Score the validation slice; True: patience is spent."""
        metrics = {k: v for k, v in self.evaluate().items() if isinstance(v, (int, float))}
        self.curve.append({"step": step.step, **metrics})
        value = metrics.get(self.metric)
        if value is not None and self._better(value):
            self.best_step, self.best_value, self.bad = step.step, value, 0
            if self.keep_best:
                self.best_weights = {k: v.detach().cpu().clone() for k, v in self.weights().items()}
        else:
            self.bad += 1
        for tracker in self.trackers:
            tracker.evaluation(step.step, metrics)
        shown = f"{value:.4f}" if value is not None else "?"
        self.log(f"step {step.step}: {self.metric} {shown} (best {self.best_value:.4f} at step {self.best_step})"
                 if self.best_value is not None else f"step {step.step}: {self.metric} {shown}")
        patience = self.training.early_stopping
        return bool(patience) and self.bad >= patience

    def __call__(self, step: Step) -> bool:
        for tracker in self.trackers:
            tracker.step(step)
        every = self.training.eval_every
        stop = False
        if every and self.evaluate is not None and (step.step % every == 0 or step.step == step.total_steps):
            stop = self._evaluate(step)
        every = self.training.checkpoint_every
        if every and self.write and not step.step % every and step.step < step.total_steps and not stop:
            best = {BEST + k: v for k, v in (self.best_weights or {}).items()}
            save_checkpoint(self.out_dir, step.snapshot(), self.state(), best)
        if stop:
            self.log(f"stopping early at step {step.step}: {self.training.early_stopping} evaluations without a "
                     f"better {self.metric}")
        return stop
