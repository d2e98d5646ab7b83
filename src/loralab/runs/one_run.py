"""One run, end to end: data -> model + strategy -> training -> weights + `run.json`.

`run()` is what `loralab train` and every sweep call; `load_run()` rebuilds the trained model from
a run folder for prediction, evaluation and export.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from loralab.version import __version__
from loralab.runs.artifacts import (RECORD, WEIGHTS, file_sha256, load_state_into, load_weights, mark_failed,
                                    remove_leftovers, save_weights)
from loralab.runs.artifacts import write_json as _write_json
from loralab.runs.checkpoint import load_checkpoint, remove_checkpoint, resumable
from loralab.runs.config import RunConfig
from loralab.runs.during import DuringTraining
from loralab.machine import cpu_name
from loralab.runs.record import read_record
from loralab.runs.trackers import check_trackers, open_trackers
from loralab.tasks import TaskConfig
from loralab.tasks import Task, get_task, infer_task, resolve_scoring
from loralab.errors import LoralabError
from loralab.validate import SettingError
from loralab.models import (DECODER_TYPES, DEFAULT_MODEL, architecture, fingerprint, head_names, is_head, load_model, load_tokenizer,
                            model_type, offline_environment, pad_token_id, position_limit, recorded_model, resolve_model)
from loralab.models.head_start import HeadStart, apply_head_start, plan, untrained_modules
from loralab.models.half import half_base
from loralab.models.quantize import quantize_model
from loralab.runs.peft import CONFIG as ADAPTER_CONFIG
from loralab.runs.peft import PeftAdapter, apply_peft_adapter, read_peft_adapter
from loralab.strategies import ParamGroup, Strategy, apply_strategy
from loralab.training import TrainConfig, evaluate, train
from loralab.training.distributed import SINGLE, DataParallel
from loralab.training.interface import EpochHook


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LoralabError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def _trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a run must save: everything that trained, plus the task head (even if frozen)."""
    heads = head_names(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    names |= {n for n, _ in model.named_parameters() if n.split(".")[0] in heads}
    return {n: p for n, p in model.named_parameters() if n in names}


def sample(examples: list, limit: int | None, seed: int | None) -> list:
    """`limit` examples drawn at random with `seed`, in file order (all of them when there are fewer)."""
    if seed is None or limit is None or limit >= len(examples):
        return examples if limit is None else examples[:limit]
    chosen = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))[:limit]
    return [examples[i] for i in sorted(chosen.tolist())]


def data_identity(config: RunConfig) -> dict[str, dict[str, str]]:
    """The data files a run reads, by path and by content (sha256), so a resumed sweep can tell
    that a file was edited in place."""
    return {key: {"path": str(getattr(config, key)), "sha256": file_sha256(getattr(config, key))}
            for key in ("train", "valid") if getattr(config, key)}


def learning_rates(groups: tuple[ParamGroup, ...], training: TrainConfig,
                   model: torch.nn.Module | None = None) -> tuple[ParamGroup, ...]:
    """The strategy's parameter groups at the run's learning rates: a subspace's theta at
    `training.theta_lr` where it is set; a group with an `lr_scale` (LoRA+'s B) at `lr` times it;
    with `training.head_lr`, `model`'s head parameters in groups of their own at that rate; every
    other group at the run's `lr` (None)."""
    def rate(group: ParamGroup) -> ParamGroup:
        if group.role == "theta":
            return group._replace(lr=training.theta_lr)
        if group.lr_scale is not None:
            return group._replace(lr=training.lr * group.lr_scale)
        return group

    groups = tuple(rate(group) for group in groups)
    if training.head_lr is None or model is None:
        return groups
    arch = architecture(model)
    head = {id(p) for n, p in model.named_parameters() if is_head(n, arch)}
    split = []
    for group in groups:  # a group at the run's lr gives its head parameters up, in order
        if group.lr is not None or group.optimizer is not None or not any(id(p) in head for p in group.params):
            split.append(group)
            continue
        rest = tuple(p for p in group.params if id(p) not in head)
        split += ([group._replace(params=rest)] if rest else []) + [
            group._replace(role="head", params=tuple(p for p in group.params if id(p) in head), lr=training.head_lr)]
    return tuple(split)


def epoch_hook(task: Task, training: TrainConfig) -> EpochHook | None:
    """What the task does as each epoch starts: with `shuffle_options`, a task that can (multiple
    choice by letter) shows each question's options in a new order."""
    return getattr(task, "permuted", None) if training.shuffle_options else None


def task_model(name: str | None, task: Task, space: dict[str, Any] | None = None, **kwargs: Any) -> torch.nn.Module:
    """`load_model` with the head of `task` (sized by its label space `space`)."""
    return load_model(name, model_class=task.model_class, model_kwargs=task.model_kwargs(space or {}), **kwargs)


def run_task(config: RunConfig) -> Task:
    """The task a run's data is, scored the way its model scores (an encoder's head, a decoder's tokens)."""
    name = infer_task(config.train, config.task)
    decoder = model_type(config.model, offline=config.offline, trust_remote_code=config.trust_remote_code) in DECODER_TYPES
    return get_task(name, resolve_scoring(name, config.task.scoring, decoder))


def run(config: RunConfig, out_dir: str | Path, *, parallel: DataParallel = SINGLE, **kwargs: Any) -> dict[str, Any]:
    """`train_run`, and a run that stops on a user error or a failed write (a full disk) leaves its
    record 'failed' with why, never 'running'."""
    try:
        return train_run(config, out_dir, parallel=parallel, **kwargs)
    except (LoralabError, OSError) as e:
        if parallel.main:
            mark_failed(Path(out_dir) / RECORD, e)
        raise


def train_run(config: RunConfig, out_dir: str | Path, *, progress: bool = True,
              log: Callable[[str], None] = print, adapter: PeftAdapter | None = None,
              parallel: DataParallel = SINGLE) -> dict[str, Any]:
    """Train one configuration and leave `out_dir/run.json` and `out_dir/weights.safetensors`.

    `adapter` is a peft LoRA adapter to start from (`read_peft_adapter(folder)`, read once);
    `config.strategy` must then be the adapter's own (`adapter.strategy`).
    `parallel`: this process's rank in a data-parallel run; only rank 0 writes the folder.
    A folder holding this run unfinished (status "running") with a checkpoint goes on from it.
    """
    out_dir = Path(out_dir)
    config = dataclasses.replace(config, model=recorded_model(config.model))
    if parallel.main:  # a folder reused after a kill mid-save: its temporary files go first
        remove_leftovers(out_dir)
    offline_environment(config.offline)
    device = parallel.device(resolve_device(config.device))
    write_json = _write_json if parallel.main else (lambda *_: None)
    if not parallel.main:
        progress, log = False, (lambda _: None)
    task = run_task(config)
    train_examples = sample(task.read(config.train, config.task,
                                      limit=None if config.train_sample_seed is not None else config.train_limit),
                            config.train_limit, config.train_sample_seed)
    valid_examples = task.read(config.valid, config.task, limit=config.valid_limit) if config.valid else None
    space = task.label_space(train_examples, source=config.train)
    # Every label checked before anything is written; the targets also place the head's start.
    targets = task.check_labels(train_examples, space, source=config.train)
    if valid_examples is not None:
        task.check_labels(valid_examples, space, source=config.valid)
    if config.training.eval_every and valid_examples is None:
        raise SettingError("training.eval_every", config.training.eval_every, "0 without a validation file (--valid)")
    if parallel.distributed and config.training.checkpoint_every:
        raise SettingError("training.checkpoint_every", config.training.checkpoint_every, "0 under torchrun")
    if parallel.sharded and config.base_dtype != "float32":  # FSDP2 gathers one dtype per layer
        raise LoralabError(f"--base-dtype {config.base_dtype} with --fsdp: FSDP2 shards a layer's weights as one dtype; "
                           "use DDP (no --fsdp) or a float32 base")
    check_trackers(config.training.log_to)  # a tracker not installed stops the run before anything is written

    tokenizer = load_tokenizer(config.model, offline=config.offline, trust_remote_code=config.trust_remote_code)
    # Both files are tokenized before anything is written: text the tokenizer refuses, or a validation
    # question that cannot fit max_length, stops the run here, not after hours of training.
    items = task.encode(train_examples, tokenizer, config.training.max_length, space, source=config.train)
    valid_items = (task.encode(valid_examples, tokenizer, config.training.max_length, space, source=config.valid)
                   if valid_examples is not None else None)
    model = task_model(config.model, task, space, offline=config.offline, trust_remote_code=config.trust_remote_code,
                       seed=config.training.seed)
    limit = position_limit(model)
    if limit is not None and config.training.max_length > limit:  # a longer sequence would index past its table
        raise SettingError("training.max_length", config.training.max_length,
                           f"at most {limit}: {config.model or DEFAULT_MODEL} has {limit} positions")
    base = {"name": config.model, "path": resolve_model(config.model), "model_type": model.config.model_type,
            "fingerprint": fingerprint(model)}
    # A run resumed goes on as it started: its record's head start (none, for a record from before them).
    previous = read_record(out_dir / RECORD) if parallel.main and resumable(out_dir, config) else None
    start = (HeadStart.from_record(previous) if previous is not None
             else plan(model, config.head, task.name, targets))
    apply_head_start(model, start)
    if adapter is not None:
        if config.strategy != adapter.strategy:
            raise LoralabError(f"{adapter.path}: the run's strategy settings differ from the adapter's own")
        report = apply_peft_adapter(model, adapter)
    else:
        report = apply_strategy(model, config.strategy)
    quantization = quantize_model(model, config.quantize)  # the frozen base weights, after the strategy chose them
    halved = half_base(model, config.base_dtype)  # likewise: the frozen matrices in bf16 / fp16 (None: float32)
    model.to(device)
    record: dict[str, Any] = {
        "status": "running",
        "loralab_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "strategy": config.strategy.strategy.value,
        "task": task.name,
        **({"scoring": task.scoring} if getattr(task, "scoring", None) else {}),
        "metric": task.metrics[0],
        **({"label_space": space} if space else {}),
        "head": list(head_names(model)),
        "head_start": start.to_record(),
        "hyperparameters": config.flat(),
        "config": config.to_dict(),
        "base_model": base,
        "trainable_params": report.trainable_params,
        "total_params": report.total_params,
        "adapted_modules": len(report.adapted_modules),
        **({"quantization": quantization.to_dict()} if quantization else {}),
        **({"half_base": halved.to_dict()} if halved else {}),
        "train_examples": len(train_examples),
        "data": data_identity(config),
        **({"started_from_adapter": str(adapter.path)} if adapter is not None else {}),
        "device": str(device),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "cpu": cpu_name(),
    }
    resume = previous is not None and load_checkpoint(out_dir)
    if resume:
        record["created"] = previous.get("created", record["created"])
        record["resumed_at_steps"] = previous.get("resumed_at_steps", []) + [resume[0].step]
        log(f"resuming from the checkpoint at step {resume[0].step}")
    elif parallel.main:
        remove_checkpoint(out_dir)  # a stale one from another run must never be resumed
    write_json(out_dir / RECORD, record)
    log(f"{task.name}, {config.strategy.strategy.value}: {report.trainable_params:,} of {report.total_params:,} "
        f"parameters train ({100 * report.trainable_fraction:.2f}%), {len(train_examples)} examples, device {device}")

    pad_id = pad_token_id(tokenizer)

    def scored(items_: list) -> dict[str, Any]:
        return evaluate(model, items_, task=task, pad_id=pad_id, batch_size=config.training.eval_batch_size,
                        device=device, progress=progress, packed=config.training.packed, parallel=parallel,
                        precision=config.training.precision)

    trackers = open_trackers(config, out_dir) if parallel.main else []
    during = DuringTraining(config.training, out_dir, metric=task.metrics[0], log=log, write=parallel.main,
                            trackers=trackers,
                            evaluate=(lambda: scored(valid_items[:config.training.eval_limit])) if valid_items else None,
                            weights=lambda: _trained_state(model))
    if resume:
        during.restore(resume[1], resume[2])
    result = train(model, items, config.training, task=task, pad_id=pad_id, device=device, progress=progress,
                   groups=learning_rates(report.groups, config.training, model), parallel=parallel,
                   on_epoch=epoch_hook(task, config.training), on_step=during, start=resume[0] if resume else None)
    record.update({
        "status": result.status,
        "steps": result.steps,
        "train_seconds": round(result.train_seconds, 3),
        "median_step_seconds": round(result.median_step_seconds, 5),
        "peak_memory_mb": round(result.peak_memory_mb, 1),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "loss": [round(x, 5) for x in result.losses],
        "step_seconds": [round(x, 5) for x in result.step_seconds],
        **({"distributed": result.extra["distributed"]} if "distributed" in result.extra else {}),
        **({"curve": during.curve, "best_step": during.best_step} if during.curve else {}),
        **({"stopped_early_at_step": result.stopped_at_step} if result.stopped_at_step else {}),
    })
    if result.status == "diverged":
        record["diverged_at_step"] = result.diverged_at_step
        record["diverged_reason"] = result.diverged_reason
        write_json(out_dir / RECORD, record)
        for tracker in trackers:
            tracker.finish(record, out_dir / RECORD)
        log(f"diverged at step {result.diverged_at_step}: {result.diverged_reason}")
        return record

    record["weights"] = WEIGHTS
    if during.keep_best and during.best_weights is not None and during.best_step != result.steps:
        load_state_into(model, during.best_weights, "the best evaluation's weights")
    if during.curve:
        record["kept_step"] = during.best_step if during.keep_best and during.best_weights is not None else result.steps
    state = parallel.whole(_trained_state(model))  # every rank takes part in gathering sharded weights
    if parallel.main:
        record["weights_sha256"] = save_weights(out_dir / WEIGHTS, state, {"format": "loralab"})
    if valid_items is not None:
        record["valid"] = scored(valid_items)
        record["valid"]["path"] = str(config.valid)
    write_json(out_dir / RECORD, record)
    for tracker in trackers:
        tracker.finish(record, out_dir / RECORD)
    if parallel.main:
        remove_checkpoint(out_dir)  # the run is finished: nothing left to resume
    return record


@dataclass
class LoadedRun:
    """A trained model rebuilt from its run folder."""

    model: torch.nn.Module
    tokenizer: Any
    config: RunConfig
    record: dict[str, Any]
    device: torch.device
    task: Task = field(default_factory=lambda: get_task("multiple-choice"))
    space: dict[str, Any] = field(default_factory=dict)
    """The task's label space as recorded (a classification run's labels)."""


def load_run(run_dir: str | Path, *, device: str = "auto") -> LoadedRun:
    """A trained run rebuilt from its folder: its record's configuration, the base model with the strategy
    applied and the trained weights loaded (their hash and the base model's fingerprint checked against the
    record), the tokenizer and the task, ready to score (`loaded.model`, `loaded.tokenizer`, `loaded.task`, `loaded.config`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LoralabError(f"{run_dir}: no such run folder")
    record = read_record(run_dir / RECORD)
    if record.get("status") != "completed":
        raise LoralabError(f"{run_dir / RECORD}: run status is {record.get('status')!r}, not 'completed'")
    if "config" not in record:
        raise LoralabError(f"{run_dir / RECORD}: no 'config' field; not a loralab run record")
    config = RunConfig.from_dict(record["config"])
    offline_environment(config.offline)
    tensors = load_weights(run_dir / record.get("weights", WEIGHTS), record.get("weights_sha256"))
    # Records from before tasks were all multiple choice, and from before decoders all scored with a head.
    task = get_task(record.get("task", "multiple-choice"), record.get("scoring"))
    space = record.get("label_space") or {}
    model = task_model(config.model, task, space, offline=config.offline, trust_remote_code=config.trust_remote_code,
                       seed=config.training.seed)
    expected = record.get("base_model", {}).get("fingerprint")
    if expected and fingerprint(model) != expected:
        raise LoralabError(
            f"{run_dir}: this run was trained on a base model with fingerprint {expected}, but {config.model!r} "
            f"now loads weights with fingerprint {fingerprint(model)}; refusing to apply it to a different model"
        )
    apply_head_start(model, HeadStart.from_record(record))  # before the strategy: a subspace's theta_0 holds it
    apply_strategy(model, config.strategy)
    quantize_model(model, config.quantize)  # deterministic: the same quantized base the run trained on
    half_base(model, config.base_dtype)  # records from before --base-dtype read as float32: nothing cast
    load_state_into(model, tensors, run_dir / record.get("weights", WEIGHTS), required=_trained_state(model))
    device_ = resolve_device(device)
    model.to(device_).eval()
    tokenizer = load_tokenizer(config.model, offline=config.offline, trust_remote_code=config.trust_remote_code)
    return LoadedRun(model, tokenizer, config, record, device_, task, space)


def load_base(name: str, data: str | Path, task_config: TaskConfig | None = None, *, device: str = "auto",
              max_length: int = 256, offline: bool = True, trust_remote_code: bool = False) -> LoadedRun:
    """A pretrained model as it is, untrained, ready to score `data`'s task: zero-shot evaluation.

    Meaningful for a decoder, which scores with its own next-token head; an encoder's task head would
    be freshly random."""
    config = RunConfig(train=str(data), model=name, task=task_config or TaskConfig(), offline=offline,
                       trust_remote_code=trust_remote_code, training=TrainConfig(max_length=max_length))
    offline_environment(offline)
    task = run_task(config)
    if model_type(name, offline=offline, trust_remote_code=trust_remote_code) not in DECODER_TYPES:
        raise LoralabError(f"--model {name}: an encoder alone would be scored through a randomly initialised "
                           f"{task.name} head; train a run first and evaluate it with --run")
    model = task_model(name, task, offline=offline, trust_remote_code=trust_remote_code)
    device_ = resolve_device(device)
    model.to(device_).eval()
    tokenizer = load_tokenizer(name, offline=offline, trust_remote_code=trust_remote_code)
    record = {"task": task.name, "strategy": "none", "base_model": {"name": name, "path": resolve_model(name)}}
    return LoadedRun(model, tokenizer, config, record, device_, task, {})


def load_adapter(adapter_dir: str | Path, *, model: str | None = None, device: str = "auto",
                 offline: bool = True, trust_remote_code: bool = False, seed: int = 0) -> LoadedRun:
    """Load a base model and apply a peft adapter to it; a `LoadedRun` ready to score.

    `model` overrides the adapter's `base_model_name_or_path`.
    """
    adapter = read_peft_adapter(adapter_dir)
    name = model or adapter.base_model
    if not name:
        raise LoralabError(f"{adapter.path / ADAPTER_CONFIG}: names no base model (base_model_name_or_path); "
                           "pass --model")
    offline_environment(offline)
    task = get_task(adapter.task, adapter.scoring)
    base = task_model(name, task, adapter.space, offline=offline, trust_remote_code=trust_remote_code, seed=seed)
    base_fingerprint = fingerprint(base)
    # A pooler the run found untrained travels in modules_to_save; it is part of the head again here.
    apply_head_start(base, HeadStart(untrained=tuple(n for n in untrained_modules(base) if n in adapter.head)))
    apply_peft_adapter(base, adapter)
    quantize_model(base, adapter.quantize)
    half_base(base, adapter.base_dtype)
    device_ = resolve_device(device)
    base.to(device_).eval()
    tokenizer = load_tokenizer(name, offline=offline, trust_remote_code=trust_remote_code)
    # The run this adapter would start: scoring reads the model and max_length from it.
    config = RunConfig(train="", model=name, strategy=adapter.strategy, offline=offline,
                       trust_remote_code=trust_remote_code, quantize=adapter.quantize, base_dtype=adapter.base_dtype)
    record = {"adapter": str(adapter.path), "strategy": Strategy.LORA.value, "task": task.name,
              "base_model": {"name": name, "path": resolve_model(name), "fingerprint": base_fingerprint}}
    return LoadedRun(base, tokenizer, config, record, device_, task, adapter.space)
