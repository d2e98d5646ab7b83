"""The `loralab` command: a thin layer over the library's functions.

User errors (`LoralabError`) print one line and exit with status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

from loralab import __version__
from loralab.errors import LoralabError
from loralab.metrics import METRICS as METRIC_NAMES
from loralab.validate import SettingError, number, output_file, output_folder


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), exit status 2 as usual."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    number("--threads", threads, integer=True, low=1)
    import torch

    torch.set_num_threads(threads)


def _train(args: argparse.Namespace) -> None:
    from loralab.runs.config import RunConfig
    from loralab.runs import run
    from loralab.strategies import StrategyConfig
    from loralab.strategies.lora import LoraConfig
    from loralab.strategies.subspace import SubspaceConfig
    from loralab.training import TrainConfig

    from loralab.runs.artifacts import RECORD, WEIGHTS
    from loralab.training.distributed import DataParallel

    parallel = DataParallel.from_environment(sharded=args.fsdp)  # torchrun's ranks, else one process
    if parallel.main:  # another rank could look after rank 0 has begun the record
        output_folder(args.out, "--out", forbid=(RECORD, WEIGHTS))
    _set_threads(args.threads)
    lora = LoraConfig(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                      targets=_names(args.lora_targets), rslora=args.rslora)
    training = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
                           warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, max_length=args.max_length,
                           seed=args.seed, max_steps=args.max_steps, packed=not args.no_packing,
                           divergence_factor=args.divergence_factor, divergence_window=args.divergence_window,
                           theta_lr=args.theta_lr, shuffle_options=args.shuffle_options,
                           gradient_checkpointing=args.gradient_checkpointing,
                           precision=args.precision, trim_heap_every=args.trim_heap_every)
    from loralab.models.quantize import QuantizeConfig

    quantize = QuantizeConfig(method=args.quantize or "none", double_quant=args.double_quant,
                              compute_dtype=args.compute_dtype)
    if args.adapter:
        from loralab.runs.peft import read_peft_adapter

        adapter = read_peft_adapter(args.adapter)
        if args.strategy not in (None, "lora"):
            raise LoralabError(f"--adapter continues training a LoRA adapter; it cannot use --strategy {args.strategy}")
        strategy, model = adapter.strategy, args.model or adapter.base_model
        if not model:
            raise LoralabError(f"{args.adapter}: the adapter names no base model; pass --model")
    else:
        subspace = SubspaceConfig(dim=args.subspace_dim, projection=args.projection, seed=args.subspace_seed,
                                  exclude=_names(args.subspace_exclude))
        strategy = StrategyConfig(strategy=args.strategy or "full", lora=lora, subspace=subspace,
                                  train_head=args.train_head)
        model = args.model or "minilm"
    config = RunConfig(train=args.train, valid=args.valid, model=model, strategy=strategy, task=_task(args),
                       training=training, train_limit=args.train_limit, valid_limit=args.valid_limit,
                       train_sample_seed=args.train_sample_seed, quantize=quantize,
                       device=args.device, offline=not args.online, trust_remote_code=args.trust_remote_code)
    from loralab.runs.one_run import resolve_device

    with parallel.joined(resolve_device(config.device)):
        record = run(config, args.out, progress=not args.quiet, adapter=adapter if args.adapter else None,
                     parallel=parallel)
    if parallel.main:
        print(summary(record, args.out))


def _task(args: argparse.Namespace):
    from loralab.tasks import TaskConfig

    # Empty names are kept: `source,label,,sentence` skips the third column of a headerless file.
    columns = () if args.columns is None else tuple(name.strip() for name in args.columns.split(","))
    return TaskConfig(name=args.task, text=args.text_column, text_pair=args.text_pair_column,
                      label=args.label_column, columns=columns, scoring=args.scoring or "auto")


def _metrics_line(values: dict) -> str:
    from loralab.metrics import METRICS

    return "  ".join(f"{METRICS[k].label} {v:.4f}" for k, v in values.items() if k in METRICS)


def summary(record: dict, out: str | Path) -> str:
    lines = [
        f"run        {out}  ({record['status']})",
        f"strategy   {record['strategy']}",
        f"trainable  {record['trainable_params']:,} of {record['total_params']:,} parameters "
        f"({100 * record['trainable_params'] / record['total_params']:.2f}%)",
        f"time       {record['train_seconds']:.1f} s for {record['steps']} steps "
        f"(median step {record['median_step_seconds'] * 1000:.0f} ms, {record['tokens_per_second']:.0f} tokens/s)",
        f"memory     peak {record['peak_memory_mb']:.0f} MB",
    ]
    if record.get("loss"):
        lines.append(f"loss       {float(record['loss'][0]):.4f} -> {float(record['loss'][-1]):.4f}")
    if record.get("diverged_reason"):
        lines.append(f"diverged   at step {record.get('diverged_at_step')}: {record['diverged_reason']}")
    if "valid" in record:
        v = record["valid"]
        count = v.get("questions", v.get("examples"))
        lines.append(f"valid      {_metrics_line(v)}  ({count} {'questions' if 'questions' in v else 'examples'})")
    return "\n".join(lines)


def _scored(args: argparse.Namespace, labelled: bool):
    from loralab.models import pad_token_id
    from loralab.runs import load_run
    from loralab.training import score

    number("--batch-size", args.batch_size, integer=True, low=1)
    if args.adapter:
        from loralab.runs import load_adapter

        loaded = load_adapter(args.adapter, model=args.model, device=args.device)
    elif args.run:
        if not Path(args.run).is_dir():
            raise LoralabError(f"{args.run}: no such run folder")
        loaded = None
    elif args.model:
        from loralab.runs import load_base

        number("--max-length", args.max_length, integer=True, low=8)
        loaded = load_base(args.model, args.data, _task(args), device=args.device, max_length=args.max_length)
    else:
        raise LoralabError("give --run (a trained run), --adapter (a peft adapter) or --model (a base model, zero-shot)")
    if loaded is None:
        # The data is read before the model loads, so a bad file is refused at once; the run's
        # record says which task reads it.
        from loralab.runs.artifacts import RECORD, read_json
        from loralab.runs.config import RunConfig
        from loralab.tasks import get_task

        record = read_json(Path(args.run) / RECORD)
        task = get_task(record.get("task", "multiple-choice"), record.get("scoring"))
        config = RunConfig.from_dict(record["config"]) if isinstance(record.get("config"), dict) else RunConfig(train="")
        examples = task.read(args.data, config.task, labelled=labelled)
        loaded = load_run(args.run, device=args.device)
    else:
        examples = loaded.task.read(args.data, loaded.config.task, labelled=labelled)
    if args.scoring and (args.run or args.adapter):
        from loralab.models import is_decoder
        from loralab.tasks import get_task, resolve_scoring

        name = loaded.task.name  # the same trained model, its options scored another way
        loaded.task = get_task(name, resolve_scoring(name, args.scoring, is_decoder(loaded.model)))
    task, tokenizer = loaded.task, loaded.tokenizer
    items = task.encode(examples, tokenizer, loaded.config.training.max_length, loaded.space, source=args.data)
    outputs = score(loaded.model, items, task=task, pad_id=pad_token_id(tokenizer), batch_size=args.batch_size,
                    device=loaded.device, progress=not args.quiet)
    return loaded, examples, items, outputs


def _predict(args: argparse.Namespace) -> None:
    from loralab.runs.artifacts import _atomic_write

    output_file(args.out, "--out", inputs=[args.data])
    if args.scores:
        output_file(args.scores, "--scores", inputs=[args.data])
        if Path(args.scores).absolute() == Path(args.out).absolute():
            raise LoralabError(f"--scores {args.scores}: is the same file as --out")
    loaded, examples, _, outputs = _scored(args, labelled=False)
    header, rows, score_header, score_rows = loaded.task.predictions(examples, outputs, loaded.space)

    def write_rows(path: str, header: list[str], rows: list[list]) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(rows)

        _atomic_write(Path(path), write)

    write_rows(args.out, header, rows)
    if args.scores and score_header:
        write_rows(args.scores, score_header, score_rows)
    print(f"wrote {len(rows)} predictions to {args.out}" + (f" and scores to {args.scores}" if args.scores else ""))


def _evaluate(args: argparse.Namespace) -> None:
    from loralab.metrics import METRICS

    loaded, _, items, outputs = _scored(args, labelled=True)
    values = loaded.task.scores(outputs, loaded.task.targets(items))
    for name, value in values.items():
        if name in METRICS:
            print(f"{METRICS[name].label:<9} {value:.4f}")
    print(f"{'questions' if 'questions' in values else 'examples':<9} {len(items)}")


def _generate(args: argparse.Namespace) -> None:
    from loralab.generation import generate

    number("--max-new-tokens", args.max_new_tokens, integer=True, low=1, high=4096)
    for prompt, text in zip(args.prompt, generate(run=args.run, model=args.model, prompts=args.prompt,
                                                  max_new_tokens=args.max_new_tokens, chat=args.chat,
                                                  device=args.device)):
        print(f"--- prompt\n{prompt}\n--- completion\n{text}")


def _merge(args: argparse.Namespace) -> None:
    from loralab.runs.merge import merge_run

    output_folder(args.out, "--out", nonempty_ok=False)
    out = merge_run(args.run, args.out)
    print(f"wrote a standalone Hugging Face model to {out} (transformers' Auto classes load it)")


def _export_peft(args: argparse.Namespace) -> None:
    from loralab.runs.peft import export_peft

    output_folder(args.out, "--out", nonempty_ok=False)
    from loralab.runs import load_run

    if not Path(args.run).is_dir():
        raise LoralabError(f"{args.run}: no such run folder")
    out = export_peft(load_run(args.run, device="cpu"), args.out, run_dir=args.run)
    print(f"wrote a peft LoRA adapter to {out} (PeftModel.from_pretrained(base_model, {str(out)!r}) loads it)")


def _sweep(args: argparse.Namespace) -> None:
    import dataclasses

    from loralab.sweeps.experiment import Experiment, load_experiment, packaged_experiment
    from loralab.sweeps.sweep import sweep
    from loralab.reports import write_report

    if args.default == (args.file is not None):
        raise LoralabError("give an experiment FILE or --default, not both or neither")
    output_folder(args.out, "--out")
    source = args.file
    if args.default or (not Path(source).exists() and "/" not in source and not source.endswith((".yaml", ".toml"))):
        source = packaged_experiment("default" if args.default else source)
    experiment = load_experiment(source)
    if args.device != "auto":  # the device is not part of what a run is, so a sweep may move
        runs = tuple(dataclasses.replace(p, config=dataclasses.replace(p.config, device=args.device))
                     for p in experiment.runs)
        experiment = dataclasses.replace(experiment, runs=runs)
    _set_threads(args.threads)
    if args.dry_run:
        for planned in experiment.runs:
            print(f"{planned.folder}  ({', '.join(planned.labels)})")
        return
    shard = (1, 1)
    if args.shard:
        k, _, n = args.shard.partition("/")
        if not (k.isdigit() and n.isdigit()):
            raise LoralabError(f"invalid --shard {args.shard!r}: expected K/N, e.g. 1/2")
        shard = (int(k), int(n))
    if args.ray is not None:
        from loralab.sweeps.on_ray import ray_executor

        sweep(experiment, args.out, progress=not args.quiet, shard=shard,
              page=not args.no_report, executor=ray_executor(args.ray or None, threads=args.threads or 1))
    else:
        import functools

        from loralab.runs import run
        from loralab.runs.one_run import resolve_device
        from loralab.training.distributed import DataParallel

        parallel = DataParallel.from_environment()  # under torchrun every run is data parallel
        with parallel.joined(resolve_device(args.device)):
            sweep(experiment, args.out, progress=not args.quiet and parallel.main, shard=shard,
                  run_fn=functools.partial(run, parallel=parallel), log=print if parallel.main else (lambda _: None),
                  page=not args.no_report and parallel.main)
        if not parallel.main:
            return
    if not args.no_report:
        report = write_report(args.out)
        print(f"report: {', '.join(str(f) for f in report.files)}")


def _intrinsic_dim(args: argparse.Namespace) -> None:
    from loralab.runs.config import RunConfig
    from loralab.sweeps.dimension import DimensionConfig, measure
    from loralab.sweeps.intrinsic import SearchConfig
    from loralab.reports import write_report
    from loralab.training import TrainConfig

    output_folder(args.out, "--out")
    _set_threads(args.threads)
    training = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length,
                           seed=args.seed, max_steps=args.max_steps, warmup_ratio=args.warmup_ratio)
    base = RunConfig(train=args.train, valid=args.valid, model=args.model, training=training, task=_task(args),
                     train_limit=args.train_limit, valid_limit=args.valid_limit, device=args.device)
    d_min = args.d_min or (300 if args.projection == "said" else 100)  # said spends one of d per weight tensor
    search = SearchConfig(d_min=d_min, d_max=args.d_max, per_decade=args.per_decade,
                          resolution=args.resolution, fraction=args.fraction)
    config = DimensionConfig(base=base, baseline_lr=args.baseline_lr, theta_lr=args.theta_lr,
                             projection=args.projection, subspace_seed=args.subspace_seed, search=search,
                             metric=args.metric, train_head=args.train_head, exclude=_names(args.exclude),
                             lr_reference_dim=args.lr_reference_dim, head_lr=args.head_lr)
    with warnings.catch_warnings():  # the head starts random and moves through the subspace: intended here
        warnings.filterwarnings("ignore", message="the task head")
        result, files = measure(config, args.out, progress=not args.quiet)
    label = f"d_int{round(100 * result.fraction)}"
    if result.d_int is None:
        print(f"{label}: not reached up to d = {max(d for d, _ in result.points)} "
              f"(threshold {result.threshold:.4f}, baseline {result.baseline:.4f})")
    else:
        print(f"{label} = {result.d_int}  ({args.metric} {dict(result.points)[result.d_int]:.4f} >= threshold "
              f"{result.threshold:.4f}, {result.fraction:.0%} of the baseline's {result.baseline:.4f})")
    report = write_report(args.out, metric=args.metric)
    print(f"wrote {', '.join(str(f) for f in list(files.values()) + list(report.files))}")


def _recommend(args: argparse.Namespace) -> None:
    from loralab.recommend import RecommendConfig, candidates, parse_budget, parse_memory, recommend
    from loralab.runs.config import RunConfig
    from loralab.strategies import StrategyConfig
    from loralab.strategies.lora import LoraConfig
    from loralab.training import TrainConfig

    output_folder(args.out, "--out")
    _set_threads(args.threads)
    training = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length, seed=args.seed,
                           warmup_ratio=args.warmup_ratio)
    strategy = StrategyConfig(lora=LoraConfig(dropout=args.lora_dropout, targets=_names(args.lora_targets)))
    base = RunConfig(train=args.train, valid=args.valid, task=_task(args), strategy=strategy, training=training,
                     train_limit=args.train_limit, valid_limit=args.valid_limit, device=args.device)
    config = RecommendConfig(base=base, candidates=candidates(_names(args.models), _names(args.strategies)),
                             budget_seconds=parse_budget(args.budget),
                             memory_mb=parse_memory(args.memory) if args.memory else None, min_steps=args.min_steps,
                             eta=args.eta, rungs=args.rungs, bracket_size=args.bracket_size,
                             pilot_valid=args.pilot_valid, seed=args.search_seed, storage=args.storage,
                             worker=args.worker, clock=args.budget_clock, brackets=args.brackets)
    result = recommend(config, args.out, progress=not args.quiet, final=not args.no_final)
    print(f"report: {Path(args.out) / 'report.md'}")
    if result.get("final"):
        print(f"winner: {result['winner']['candidate']}, {result['metric']} {result['final'][result['metric']]}")


def _report(args: argparse.Namespace) -> None:
    from loralab.reports import write_report

    if args.out:
        output_folder(args.out, "--out")
    report = write_report(args.dir, args.out, metric=args.metric)
    print(report.markdown)
    print(f"wrote {', '.join(str(f) for f in report.files)}")


def _task_options(p: argparse.ArgumentParser) -> None:
    from loralab.tasks import AUTO, SCORINGS, TASK_NAMES

    p.add_argument("--task", choices=(AUTO,) + TASK_NAMES, default=AUTO,
                   help="what the data is (default: inferred from the training file's columns and labels)")
    p.add_argument("--text-column", help="classification/regression: column of the (first) text "
                   "(default: a GLUE name such as sentence, sentence1, question, '#1 String')")
    p.add_argument("--text-pair-column", help="classification/regression: column of the second text of a pair")
    p.add_argument("--label-column", help="classification/regression: label column (default: label, Quality or score)")
    p.add_argument("--columns", metavar="NAMES", help="comma list naming the columns of a file without a header row "
                   "(GLUE's CoLA: source,label,notes,sentence)")
    p.add_argument("--scoring", choices=(AUTO,) + SCORINGS, help="multiple choice: head (encoders), letter (a decoder's "
                   "next-token logits of the option letters) or likelihood (each option's mean log-likelihood); "
                   "default: head for encoders, letter for decoders")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="loralab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"loralab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fine-tune a model on a task's data with one strategy")
    t.add_argument("--train", required=True, help="training file: multiple-choice CSV (id, prompt, A..E, answer), "
                   "or a classification/regression CSV or TSV (text or pair, label)")
    t.add_argument("--valid", help="validation file, scored with the task's metrics after training")
    t.add_argument("--strategy", choices=["full", "attention", "qv", "lora", "subspace"], help="default: full")
    _task_options(t)
    t.add_argument("--model", help="local folder, 'minilm' (packaged) or hub name (default: minilm)")
    t.add_argument("--adapter", metavar="ADAPTER_DIR",
                   help="continue training a peft LoRA adapter (its settings replace --strategy and --lora-*)")
    t.add_argument("--out", required=True, help="run folder to write run.json and weights into")
    t.add_argument("--lora-r", type=int, default=8)
    t.add_argument("--lora-alpha", type=float, default=32.0)
    t.add_argument("--lora-dropout", type=float, default=0.0)
    t.add_argument("--lora-targets", default="query,value",
                   help="comma list: query,key,value,attention_output, all-linear, or module-name suffixes")
    t.add_argument("--rslora", action="store_true", help="scale by alpha/sqrt(r) instead of alpha/r")
    t.add_argument("--subspace-dim", type=int, default=1000, help="subspace: d, the number of trained coordinates")
    t.add_argument("--projection", choices=["dense", "sparse", "fastfood", "said"], default="fastfood",
                   help="subspace: how the fixed random projection P is built")
    t.add_argument("--subspace-seed", type=int, default=0, help="subspace: seed of P")
    t.add_argument("--subspace-exclude", metavar="PREFIXES",
                   help="subspace: comma list of parameter-name prefixes kept frozen, outside the subspace "
                        "(e.g. bert.embeddings.word_embeddings)")
    t.add_argument("--train-head", action=argparse.BooleanOptionalAction, default=True,
                   help="train the task head (default); --no-train-head keeps it at its random initialisation "
                        "(under subspace it then moves only through the subspace)")
    t.add_argument("--freeze-head", dest="train_head", action="store_false", help=argparse.SUPPRESS)  # before 0.2
    t.add_argument("--theta-lr", type=float, help="subspace: learning rate of theta (default: --lr)")
    t.add_argument("--epochs", type=float, default=1.0)
    t.add_argument("--lr", type=float, default=2e-5)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--warmup-ratio", type=float, default=0.1)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--max-length", type=int, default=256)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--divergence-factor", type=float, default=10.0,
                   help="diverged when the loss stays above this many times the first step's loss (0: NaN/inf only)")
    t.add_argument("--divergence-window", type=int, default=10, help="... for this many consecutive steps")
    t.add_argument("--quantize", choices=["nf4", "fp4", "int8"],
                   help="store the frozen base linear weights in 4 or 8 bits (bitsandbytes); lora on nf4 is QLoRA")
    t.add_argument("--double-quant", action="store_true", help="with --quantize nf4/fp4: quantize the block scales too")
    t.add_argument("--compute-dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="with --quantize nf4/fp4: the dtype each product dequantizes the weight to")
    t.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute each layer's activations in backward instead of keeping them (less memory, slower)")
    t.add_argument("--trim-heap-every", type=int, default=4, metavar="N",
                   help="CPU: return freed heap to the system after every N steps (default 4; 0: never; 1 lowers "
                        "the peak memory the most and costs the most time)")
    t.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: bf16 compute (autocast), fp32 master weights and optimizer state")
    t.add_argument("--no-packing", action="store_true",
                   help="use the model's own padded forward (default: compute on real tokens only where supported)")
    t.add_argument("--shuffle-options", action="store_true",
                   help="multiple choice by letter (decoders): show the options in a new random order every epoch")
    t.add_argument("--train-limit", type=int, help="use only the first N training examples")
    t.add_argument("--train-sample-seed", type=int, help="with --train-limit: draw the N examples at random "
                   "with this seed instead of taking the first N")
    t.add_argument("--valid-limit", type=int, help="use only the first N validation questions")
    t.add_argument("--fsdp", action="store_true", help="under torchrun: shard parameters, gradients and optimizer "
                   "state across the processes with FSDP2 (default: DDP, a whole copy on each)")
    t.set_defaults(func=_train)

    for name, func, help_ in (("predict", _predict, "write predictions (id, prediction) of a trained run, as a Kaggle submission"),
                              ("evaluate", _evaluate, "print a trained run's (or a base model's) metrics on a data file")):
        p = sub.add_parser(name, help=help_)
        source = p.add_mutually_exclusive_group()
        source.add_argument("--run", help="run folder written by 'loralab train'")
        source.add_argument("--adapter", metavar="ADAPTER_DIR", help="a peft LoRA adapter folder")
        p.add_argument("--model", help="base model for --adapter (default: its base_model_name_or_path); alone: "
                       "score this base model as it is (zero-shot; a decoder, since an encoder's head would be random)")
        p.add_argument("--data", required=True, help="data file of the run's task")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--max-length", type=int, default=256, help="with --model alone: tokens per example")
        _task_options(p)
        if name == "predict":
            p.add_argument("--out", required=True, help="submission CSV to write")
            p.add_argument("--scores", help="also write every option's score to this CSV")
        p.set_defaults(func=func)

    g = sub.add_parser("generate", help="write a trained decoder's (or a base decoder's) completion of a prompt")
    source = g.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run folder written by 'loralab train' (a decoder)")
    source.add_argument("--model", help="a base decoder as it is (e.g. smollm2)")
    g.add_argument("--prompt", action="append", required=True, help="the prompt (repeat for several)")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--chat", action="store_true", help="send the prompt as a user message through the chat template")
    g.set_defaults(func=_generate)

    for name, func, help_, out_help in (
        ("merge", _merge, "merge a run's trained weights into a standalone Hugging Face model folder",
         "model folder to write (weights, config, tokenizer)"),
        ("export-peft", _export_peft, "write a LoRA run as a peft adapter folder",
         "adapter folder to write (adapter_config.json, adapter_model.safetensors)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--run", required=True, help="run folder written by 'loralab train'")
        p.add_argument("--out", required=True, help=out_help)
        p.set_defaults(func=func)

    s = sub.add_parser("sweep", help="run an experiment file's runs one after another (resumes where it stopped)")
    s.add_argument("file", nargs="?", help="experiment file (YAML or TOML), or the name of a packaged experiment")
    s.add_argument("--default", action="store_true", help="run the packaged default experiment (a few minutes on CPU)")
    s.add_argument("--out", required=True, help="sweep folder: one run folder per run, then report.md and plots")
    s.add_argument("--no-report", action="store_true", help="do not write the report (nor rewrite report.html after each run)")
    s.add_argument("--dry-run", action="store_true", help="list the planned run folders and stop")
    s.add_argument("--shard", metavar="K/N", help="run only every N-th planned run from the K-th, so N processes "
                   "can share one sweep folder (e.g. two processes with --shard 1/2 and --shard 2/2)")
    s.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run each planned run as a Ray task on the "
                   "cluster at ADDRESS (host:port, ray://host:10001 or auto; alone: a local Ray instance); records "
                   "and weights come back to --out. Needs the 'ray' extra")
    s.set_defaults(func=_sweep)

    i = sub.add_parser("intrinsic-dim", help="measure a task's intrinsic dimension: full baseline, then subspace "
                       "runs over d, reporting the smallest d reaching 90%% of the baseline")
    i.add_argument("--train", required=True, help="training file of any task")
    i.add_argument("--valid", required=True, help="validation file the metric is measured on")
    _task_options(i)
    i.add_argument("--model", default="minilm", help="local folder, 'minilm' (packaged) or hub name (default: minilm)")
    i.add_argument("--out", required=True, help="folder for the runs (baseline, d-<d>), intrinsic.json/.md/.png")
    i.add_argument("--projection", choices=["dense", "sparse", "fastfood", "said"], default="said")
    i.add_argument("--subspace-seed", type=int, default=0, help="seed of P")
    i.add_argument("--exclude", metavar="PREFIXES", help="comma list of parameter-name prefixes kept frozen, "
                   "outside the subspace (e.g. bert.embeddings.word_embeddings)")
    i.add_argument("--theta-lr", type=float, default=1e-2, help="learning rate of theta in the subspace runs")
    i.add_argument("--lr", dest="theta_lr", type=float, help=argparse.SUPPRESS)  # its name before 0.2
    i.add_argument("--head-lr", type=float, help="learning rate of a directly trained head (--train-head) and of "
                   "the SAID scales (default: --lr, which is usually far too large for them)")
    i.add_argument("--lr-reference-dim", type=int, metavar="D0",
                   help="scale theta's learning rate by sqrt(D0 / d), so that a step moves the weights equally far "
                        "at every d (default: the same --lr at every d)")
    i.add_argument("--baseline-lr", type=float, default=5e-5, help="learning rate of the full fine-tuning baseline")
    i.add_argument("--metric", choices=list(METRIC_NAMES), default="accuracy",
                   help="the score compared with the baseline (regression: pearson or spearman)")
    i.add_argument("--train-head", action=argparse.BooleanOptionalAction, default=False,
                   help="train the task head directly, beside theta (default: it moves through the subspace too)")
    i.add_argument("--head-direct", dest="train_head", action="store_true", help=argparse.SUPPRESS)  # before 0.2
    i.add_argument("--fraction", type=float, default=0.9, help="threshold as a fraction of the baseline (0.9: d_int90)")
    i.add_argument("--d-min", type=int, help="smallest d of the coarse log grid (default: 100; 300 with said, "
                   "which spends one of the d numbers on each weight tensor)")
    i.add_argument("--d-max", type=int, default=10_000, help="largest d of the coarse log grid")
    i.add_argument("--per-decade", type=int, default=2, help="coarse grid points per factor of 10")
    i.add_argument("--resolution", type=int, default=100, help="bisection stops at a bracket this narrow")
    i.add_argument("--epochs", type=float, default=1.0)
    i.add_argument("--batch-size", type=int, default=8)
    i.add_argument("--max-length", type=int, default=256)
    i.add_argument("--max-steps", type=int)
    i.add_argument("--warmup-ratio", type=float, default=0.1)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--train-limit", type=int, help="use only the first N training questions")
    i.add_argument("--valid-limit", type=int, help="use only the first N validation questions")
    i.set_defaults(func=_intrinsic_dim)

    m = sub.add_parser("recommend", help="find the model, strategy and settings worth training on your data within "
                       "a time budget (pilot runs, successive halving, then the winner on all the data)",
                       description="Several workers can share one search: start `loralab recommend` with the same "
                       "options and --out in each, each with its own --worker name (one of them 'main', the default, "
                       "which trains the winner when its own budget is spent); on several machines give them one "
                       "--storage (an SQL URL, or a journal file on a shared disk) and --out on a shared disk.")
    m.add_argument("--train", required=True, help="training file of any task")
    m.add_argument("--valid", required=True, help="validation file the candidates are compared on")
    _task_options(m)
    m.add_argument("--budget", required=True, help="wall-clock time for the whole search, final run included "
                   "(30m, 1h30m, 1590s)")
    m.add_argument("--budget-clock", choices=["wall", "cpu"], default="wall",
                   help="what --budget counts: wall-clock seconds, or this process's CPU seconds (steady on a CPU "
                        "shared with other jobs)")
    m.add_argument("--brackets", type=int, help="stop after this many brackets even if budget is left")
    m.add_argument("--models", default="minilm", help="comma list of models (folders, 'minilm' or hub names)")
    m.add_argument("--strategies", default="full,attention,qv,lora", help="comma list of strategies to try")
    m.add_argument("--memory", help="peak memory a run may use (8GB, 512MB); candidates over it are excluded")
    m.add_argument("--out", required=True, help="folder for the study, the run folders and report.md")
    m.add_argument("--lora-targets", default="query,value", help="LoRA's target modules, as for train")
    m.add_argument("--lora-dropout", type=float, default=0.0)
    m.add_argument("--epochs", type=float, default=1.0, help="epochs of the winner's final run")
    m.add_argument("--batch-size", type=int, default=8)
    m.add_argument("--max-length", type=int, default=256)
    m.add_argument("--warmup-ratio", type=float, default=0.1)
    m.add_argument("--seed", type=int, default=0, help="seed of every run")
    m.add_argument("--train-limit", type=int, help="use only the first N training examples")
    m.add_argument("--valid-limit", type=int, help="use only the first N validation examples")
    m.add_argument("--min-steps", type=int, default=16, help="optimizer steps of the first rung's pilots")
    m.add_argument("--eta", type=int, default=3, help="each rung keeps the best 1/eta with eta times the steps")
    m.add_argument("--rungs", type=int, default=3, help="rungs per bracket")
    m.add_argument("--bracket-size", type=int, help="settings drawn per bracket (default: twice the candidates)")
    m.add_argument("--pilot-valid", type=int, default=200, help="validation examples pilots are scored on")
    m.add_argument("--search-seed", type=int, default=0, help="seed of Optuna's sampler")
    m.add_argument("--storage", help="Optuna storage shared by workers: an SQL URL or a journal file "
                   "(default: OUT/study.journal)")
    m.add_argument("--worker", default="main", help="this worker's name when several share one search")
    m.add_argument("--no-final", action="store_true", help="stop after the pilots (no final run)")
    m.set_defaults(func=_recommend)

    r = sub.add_parser("report", help="Markdown table and PNG plots from a sweep folder's run records")
    r.add_argument("dir", help="folder holding run folders (each with run.json)")
    r.add_argument("--out", help="where to write report.md and the plots (default: DIR)")
    from loralab.metrics import METRICS

    r.add_argument("--metric", choices=list(METRICS),
                   help="metric to rank and plot by (default: the records' own headline metric, else map@3)")
    r.set_defaults(func=_report)

    for p in sub.choices.values():
        p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if p.prog.endswith(("train", "sweep", "intrinsic-dim", "recommend")):
            p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice); "
                           "1 is much faster on a CPU shared with other jobs")
        if p.prog.endswith("train"):
            p.add_argument("--online", action="store_true", help="allow downloading the model from a hub")
            p.add_argument("--trust-remote-code", action="store_true", help="run a hub model's own code (off by default)")
    return parser


def _option(error: SettingError, parser: argparse.ArgumentParser) -> LoralabError:
    """A setting's error named by the option that sets it (`training.lr` -> `--lr`), where there is one."""
    name = {"task.name": "task", "task.text": "text_column", "task.text_pair": "text_pair_column",
            "task.label": "label_column", "task.columns": "columns", "quantize.method": "quantize",
            "quantize.double_quant": "double_quant", "quantize.compute_dtype": "compute_dtype"}.get(error.name, error.name)
    for prefix, replacement in (("training.", ""), ("strategy.lora.", "lora-"), ("strategy.subspace.", "subspace-"),
                                ("strategy.", "")):
        if name.startswith(prefix):
            name = replacement + name[len(prefix):]
            break
    option = "--" + name.replace("_", "-")
    known = {o for action in parser._actions for o in action.option_strings}
    if error.name.startswith("--") or option not in known:
        return error
    return error.renamed(option)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            try:
                args.func(args)
            except SettingError as e:
                raise _option(e, parser._subparsers._group_actions[0].choices[args.command]) from None
    except LoralabError as e:
        print(f"loralab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loralab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
