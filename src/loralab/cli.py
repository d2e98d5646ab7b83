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

    output_folder(args.out, "--out", forbid=(RECORD, WEIGHTS))
    _set_threads(args.threads)
    lora = LoraConfig(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                      targets=_names(args.lora_targets), rslora=args.rslora)
    training = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
                           warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, max_length=args.max_length,
                           seed=args.seed, max_steps=args.max_steps, packed=not args.no_packing,
                           divergence_factor=args.divergence_factor, divergence_window=args.divergence_window,
                           theta_lr=args.theta_lr, precision=args.precision)
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
                       train_sample_seed=args.train_sample_seed,
                       device=args.device, offline=not args.online, trust_remote_code=args.trust_remote_code)
    record = run(config, args.out, progress=not args.quiet, adapter=adapter if args.adapter else None)
    print(summary(record, args.out))


def _task(args: argparse.Namespace):
    from loralab.tasks import TaskConfig

    # Empty names are kept: `source,label,,sentence` skips the third column of a headerless file.
    columns = () if args.columns is None else tuple(name.strip() for name in args.columns.split(","))
    return TaskConfig(name=args.task, text=args.text_column, text_pair=args.text_pair_column,
                      label=args.label_column, columns=columns)


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
    from loralab.runs import load_run
    from loralab.training import score

    number("--batch-size", args.batch_size, integer=True, low=1)
    if args.adapter:
        from loralab.runs import load_adapter

        loaded = load_adapter(args.adapter, model=args.model, device=args.device)
    else:
        if not Path(args.run).is_dir():
            raise LoralabError(f"{args.run}: no such run folder")
        loaded = None
    if loaded is None:
        # The data is read before the model loads, so a bad file is refused at once; the run's
        # record says which task reads it.
        from loralab.runs.artifacts import RECORD, read_json
        from loralab.runs.config import RunConfig
        from loralab.tasks import get_task

        record = read_json(Path(args.run) / RECORD)
        task = get_task(record.get("task", "multiple-choice"))
        config = RunConfig.from_dict(record["config"]) if isinstance(record.get("config"), dict) else RunConfig(train="")
        examples = task.read(args.data, config.task, labelled=labelled)
        loaded = load_run(args.run, device=args.device)
    else:
        task = loaded.task
        examples = task.read(args.data, loaded.config.task, labelled=labelled)
    tokenizer = loaded.tokenizer
    items = task.encode(examples, tokenizer, loaded.config.training.max_length, loaded.space, source=args.data)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    outputs = score(loaded.model, items, task=task, pad_id=pad_id, batch_size=args.batch_size, device=loaded.device,
                    progress=not args.quiet)
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
    sweep(experiment, args.out, progress=not args.quiet, shard=shard)
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


def _report(args: argparse.Namespace) -> None:
    from loralab.reports import write_report

    if args.out:
        output_folder(args.out, "--out")
    report = write_report(args.dir, args.out, metric=args.metric)
    print(report.markdown)
    print(f"wrote {', '.join(str(f) for f in report.files)}")


def _task_options(p: argparse.ArgumentParser) -> None:
    from loralab.tasks import AUTO, TASK_NAMES

    p.add_argument("--task", choices=(AUTO,) + TASK_NAMES, default=AUTO,
                   help="what the data is (default: inferred from the training file's columns and labels)")
    p.add_argument("--text-column", help="classification/regression: column of the (first) text "
                   "(default: a GLUE name such as sentence, sentence1, question, '#1 String')")
    p.add_argument("--text-pair-column", help="classification/regression: column of the second text of a pair")
    p.add_argument("--label-column", help="classification/regression: label column (default: label, Quality or score)")
    p.add_argument("--columns", metavar="NAMES", help="comma list naming the columns of a file without a header row "
                   "(GLUE's CoLA: source,label,notes,sentence)")


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
    t.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: bf16 compute (autocast), fp32 master weights and optimizer state")
    t.add_argument("--no-packing", action="store_true",
                   help="use the model's own padded forward (default: compute on real tokens only where supported)")
    t.add_argument("--train-limit", type=int, help="use only the first N training examples")
    t.add_argument("--train-sample-seed", type=int, help="with --train-limit: draw the N examples at random "
                   "with this seed instead of taking the first N")
    t.add_argument("--valid-limit", type=int, help="use only the first N validation questions")
    t.set_defaults(func=_train)

    for name, func, help_ in (("predict", _predict, "write predictions (id, prediction) of a trained run, as a Kaggle submission"),
                              ("evaluate", _evaluate, "print a trained run's metrics on a data file")):
        p = sub.add_parser(name, help=help_)
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--run", help="run folder written by 'loralab train'")
        source.add_argument("--adapter", metavar="ADAPTER_DIR", help="a peft LoRA adapter folder")
        p.add_argument("--model", help="base model for --adapter (default: its base_model_name_or_path)")
        p.add_argument("--data", required=True, help="data file of the run's task")
        p.add_argument("--batch-size", type=int, default=32)
        if name == "predict":
            p.add_argument("--out", required=True, help="submission CSV to write")
            p.add_argument("--scores", help="also write every option's score to this CSV")
        p.set_defaults(func=func)

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
    s.add_argument("--no-report", action="store_true", help="do not write the report when the sweep ends")
    s.add_argument("--dry-run", action="store_true", help="list the planned run folders and stop")
    s.add_argument("--shard", metavar="K/N", help="run only every N-th planned run from the K-th, so N processes "
                   "can share one sweep folder (e.g. two processes with --shard 1/2 and --shard 2/2)")
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
        if p.prog.endswith(("train", "sweep", "intrinsic-dim")):
            p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice); "
                           "1 is much faster on a CPU shared with other jobs")
        if p.prog.endswith("train"):
            p.add_argument("--online", action="store_true", help="allow downloading the model from a hub")
            p.add_argument("--trust-remote-code", action="store_true", help="run a hub model's own code (off by default)")
    return parser


def _option(error: SettingError, parser: argparse.ArgumentParser) -> LoralabError:
    """A setting's error named by the option that sets it (`training.lr` -> `--lr`), where there is one."""
    name = {"task.name": "task", "task.text": "text_column", "task.text_pair": "text_pair_column",
            "task.label": "label_column", "task.columns": "columns"}.get(error.name, error.name)
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
