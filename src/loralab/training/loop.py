"""The training loop and evaluation: plain functions that know nothing of the strategy or task in use.

`train` optimises the parameter groups it is given (whatever requires grad, without them) with
AdamW under a linear warm-up then linear decay schedule (`optimizer.py`), with gradient accumulation
and dynamic padding, and measures what the run cost: wall time per optimizer step, tokens per
second and peak memory. What it asks of a task and a strategy is in `interface.py`.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from loralab.heap import release_heap
from loralab.models.checkpointing import checkpointing
from loralab.settings.training import TrainConfig
from loralab.training.batching import batches
from loralab.training.distributed import SINGLE, DataParallel
from loralab.training.interface import EpochHook, ParamGroup, Step, StepHook, Task
from loralab.training.memory import PeakMemory
from loralab.training.optimizer import adamw, linear_schedule
from loralab.training.precision import PRECISIONS, autocast, warn_if_emulated
from loralab.training.snapshot import Snapshot, capture, restore
from loralab.validate import SettingError, number




@dataclass
class TrainResult:
    """What a training run did and cost."""

    status: str  # "completed" or "diverged"
    steps: int
    losses: list[float]  # one per optimizer step
    step_seconds: list[float]
    train_seconds: float
    tokens: int
    peak_memory_mb: float
    diverged_at_step: int | None = None
    diverged_reason: str | None = None
    stopped_at_step: int | None = None  # a step hook stopped training there (early stopping)
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def median_step_seconds(self) -> float:
        return statistics.median(self.step_seconds) if self.step_seconds else 0.0


def runaway_loss(losses: list[float], config: TrainConfig, *, finished: bool = False) -> str | None:
    """Why the loss counts as diverged without being NaN/inf, or None.

    The rule: the median loss of the last `divergence_window` optimizer steps is above
    `divergence_factor` times the first step's loss (the loss of the model before any update); a run
    that ends before that many steps is judged on every step after the first. The median ignores a
    spike that comes back down, and a dip inside a loss that stays up.
    """
    factor, window = config.divergence_factor, config.divergence_window
    if not factor or len(losses) < 2:
        return None
    if len(losses) <= window:
        if not finished:
            return None
        window = len(losses) - 1
    limit = factor * losses[0]
    median = statistics.median(losses[-window:])
    if median > limit:
        return (f"the median loss of the last {window} steps, {median:.4g}, is above {factor:g} x the first "
                f"step's {losses[0]:.4g}")
    return None


def _diverge(result: TrainResult, why: str, at: int | None = None) -> None:
    result.status, result.diverged_reason = "diverged", why
    result.diverged_at_step = at if at is not None else result.steps + 1


def train(model: torch.nn.Module, items: Sequence[Any], config: TrainConfig, *, task: Task, pad_id: int,
          device: str | torch.device = "cpu", progress: bool = True, groups: Sequence[ParamGroup] | None = None,
          parallel: DataParallel = SINGLE, on_epoch: EpochHook | None = None, on_step: StepHook | None = None,
          start: Snapshot | None = None) -> TrainResult:
    """Train `model` in place on a task's encoded examples; returns losses, timing and memory.

    The task supplies the batches (`collate`) and the loss; the loop knows nothing else of it.
    `groups`: what trains, as the strategy reported it, each group at its own learning rate where it
    has one; None: whatever requires grad, at `config.lr`.
    `parallel`: this process's place among the ranks of a data-parallel run (`loralab.training.distributed`);
    every rank takes `batch_size` examples of each global batch of `batch_size x world`.
    `on_epoch`: gives each epoch's examples, drawn from the loop's data-order generator before the
    epoch's batches are (see `interface.EpochHook`).
    """
    device = torch.device(device)
    torch.manual_seed(config.seed + parallel.rank)  # each rank its own dropout, as each example has
    generator = torch.Generator().manual_seed(config.seed)  # the same global batches on every rank
    global_batch = config.batch_size * parallel.world
    collate = functools.partial(task.collate, pad_id=pad_id)

    def epoch(skip: int) -> Iterator[tuple[dict, float]]:
        # Collated one batch at a time: an epoch of padded tensors never sits in memory at once.
        epoch_items = items if on_epoch is None else on_epoch(items, generator)
        chunks = batches(epoch_items, global_batch, list, shuffle=True, generator=generator,
                         group_by_length=config.group_by_length)
        for chunk in itertools.islice(chunks, skip, None):  # a resumed epoch: its first batches were done
            yield parallel.shard(chunk, collate)

    probe = None
    if parallel.distributed and items:
        first = torch.Generator().set_state(generator.get_state())  # a look at the first batch, the order untouched
        chunk = next(batches(items, global_batch, list, shuffle=True, generator=first, group_by_length=config.group_by_length))
        probe = {k: v.to(device) for k, v in parallel.shard(chunk, collate)[0].items()}
    prepared = parallel.prepare(model, task, config.packed, groups, probe)
    warn_if_emulated(config.precision, device)
    optimizer = adamw(model, config.lr, config.weight_decay, prepared.groups, fused=config.precision == "bf16")
    micro_per_epoch = math.ceil(len(items) / global_batch)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    warmup = int(total_steps * config.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total_steps, warmup))
    params = [p for group in optimizer.param_groups for p in group["params"]]

    result = TrainResult("completed", 0, [], [], 0.0, 0, 0.0)
    skip, before = 0, 0.0
    if parallel.distributed and config.checkpoint_every:
        raise SettingError("training.checkpoint_every", config.checkpoint_every, "0 under torchrun (checkpoints "
                           "and resuming a data-parallel run are not supported)")
    if start is not None:
        restore(start, model, optimizer, scheduler)
        position = start.meta["position"]
        generator.set_state(start.tensors["rng/epoch"])
        skip, before = position["index"], position["train_seconds"]
        result.steps, result.tokens = position["steps"], position["tokens"]
        result.losses, result.step_seconds = list(position["losses"]), list(position["step_seconds"])
    model.train()
    bar = tqdm(total=total_steps, initial=result.steps, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    start = time.perf_counter()
    with checkpointing(model, config.gradient_checkpointing), PeakMemory(device) as memory:
        step_start, step_loss, step_tokens, micro = time.perf_counter(), 0.0, 0, 0
        while result.steps < total_steps and result.status == "completed" and result.stopped_at_step is None:
            epoch_state = generator.get_state()
            for index, (batch, share) in enumerate(epoch(skip), start=skip):
                batch = {k: v.to(device) for k, v in batch.items()}
                micro += 1
                step_ends = not micro % config.grad_accum or index == micro_per_epoch - 1
                with prepared.sync(step_ends):  # accumulating: gradients are reduced once, at the step's end
                    with autocast(config.precision, device):
                        loss = prepared.loss(batch)
                    (loss * share / config.grad_accum).backward()
                step_loss += loss.item() * share / parallel.world / config.grad_accum
                step_tokens += int(batch["attention_mask"].sum()) if share else 0
                if not step_ends:
                    continue
                step_loss, step_tokens = parallel.total(step_loss, step_tokens)
                result.tokens += int(step_tokens)
                if not math.isfinite(step_loss):
                    result.losses.append(step_loss)
                    _diverge(result, "the loss is not finite")
                    break
                if config.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                result.steps += 1
                if device.type == "cpu" and config.trim_heap_every and not result.steps % config.trim_heap_every:
                    release_heap()  # what the steps' activations freed, before new batch shapes fragment it further
                now = time.perf_counter()
                result.losses.append(step_loss)
                result.step_seconds.append(now - step_start)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{result.tokens / (now - start):.0f}")
                step_start, step_loss, step_tokens, micro = now, 0.0, 0, 0
                why = runaway_loss(result.losses, config, finished=result.steps >= total_steps)
                if why:
                    _diverge(result, why, at=result.steps)
                    break
                if on_step is not None:
                    position = {"steps": result.steps, "index": index + 1, "tokens": result.tokens,
                                "losses": list(result.losses), "step_seconds": list(result.step_seconds),
                                "train_seconds": before + now - start}
                    snapshot = functools.partial(capture, model, optimizer, scheduler, epoch_state, position)
                    stop = on_step(Step(result.steps, total_steps, result.losses[-1], lr,
                                        result.tokens / (before + now - start), snapshot))
                    model.train()  # an evaluation in the hook left it in eval mode
                    if stop:
                        result.stopped_at_step = result.steps
                        break
                if result.steps >= total_steps:
                    break
            skip = 0
    prepared.finish()
    if prepared.info:
        result.extra["distributed"] = dict(prepared.info, global_batch_size=global_batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.train_seconds = before + time.perf_counter() - start
    result.peak_memory_mb = memory.peak_mb
    bar.close()
    return result


@torch.no_grad()
def score(model: torch.nn.Module, items: Sequence[Any], *, task: Task, pad_id: int, batch_size: int = 32,
          device: str | torch.device = "cpu", progress: bool = False, packed: bool = True,
          parallel: DataParallel = SINGLE, precision: str = "fp32") -> list[list[float]]:
    """Each example's outputs (option scores, label logits or the predicted value), in file order;
    `parallel`: each rank scores its share and every rank gets all the outputs."""
    model.eval()
    outputs = []
    everything, items = items, parallel.split(items)
    total = math.ceil(len(items) / batch_size)
    # Parametrized weights (the random subspace) are computed once for the whole pass, not per batch.
    with parametrize.cached(), autocast(precision, device):
        for batch in tqdm(batches(items, batch_size, functools.partial(task.collate, pad_id=pad_id)), total=total,
                          desc="score", unit="batch", disable=not progress):
            batch = {k: v.to(device) for k, v in batch.items()}
            outputs.extend(task.outputs(model, batch, packed))
    return parallel.gather(outputs, len(everything))


def evaluate(model: torch.nn.Module, items: Sequence[Any], *, task: Task, pad_id: int, batch_size: int = 32,
             device: str | torch.device = "cpu", progress: bool = False, packed: bool = True,
             parallel: DataParallel = SINGLE, precision: str = "fp32") -> dict[str, float]:
    """The task's metrics over examples with known labels."""
    outputs = score(model, items, task=task, pad_id=pad_id, batch_size=batch_size, device=device, progress=progress,
                    packed=packed, parallel=parallel, precision=precision)
    return task.scores(outputs, task.targets(items))
