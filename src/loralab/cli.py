"""The `loralab` command: a thin layer over `loralab.api`, its options generated from `loralab.settings`.

User errors (`LoralabError`) print one line and exit with status 2; anything else is a bug and keeps
its traceback. Building the parser imports no torch, so `--help` is fast; each command imports what it
runs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from loralab.errors import LoralabError
from loralab.settings import SETTINGS, RunConfig, TaskConfig
from loralab.settings.commands import IntrinsicOptions, RecommendOptions
from loralab.settings.table import Setting, SettingsTable
from loralab.validate import SettingError, number, output_file, output_folder
from loralab.version import __version__

RECOMMEND = SettingsTable.of(RecommendOptions)
INTRINSIC = SettingsTable.of(IntrinsicOptions)
_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "list": "A,B"}
_PREFIX = "setting:"  # argparse dests of settings: "setting:training.lr"


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), exit status 2 as usual."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _converter(setting: Setting) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return setting.parse(text)
        except SettingError:
            raise ValueError(text) from None

    convert.__name__ = setting.kind if setting.kind in ("int", "float") else "value"
    return convert


def _add(parser: argparse.ArgumentParser, setting: Setting, table: str, default: Any = None) -> None:
    """One setting as an option; absent from the namespace unless given, so the table's default applies."""
    help_ = f"{setting.doc} (default: {setting.shown_default() if default is None else default})".replace("%", "%%")
    dest, kwargs = f"{_PREFIX}{table}:{setting.path}", {"default": argparse.SUPPRESS, "help": help_}
    if setting.kind == "bool" and setting.negate:
        parser.add_argument(setting.option, dest=dest, action="store_const", const=not setting.default, **kwargs)
    elif setting.kind == "bool":
        parser.add_argument(setting.option, dest=dest, action=argparse.BooleanOptionalAction, **kwargs)
    else:
        parser.add_argument(setting.option, dest=dest, type=_converter(setting), choices=setting.choices,
                            metavar=setting.metavar or (None if setting.choices else _METAVARS[setting.kind]), **kwargs)


def _add_settings(parser: argparse.ArgumentParser, paths: tuple[str, ...] | None = None, *, table: SettingsTable = SETTINGS,
                  name: str = "run", defaults: dict[str, Any] | None = None) -> None:
    group = parser.add_argument_group(f"{name} settings") if name != "run" else parser
    for setting in table:
        if paths is None or setting.path in paths or any(setting.path.startswith(p + ".") for p in paths):
            _add(group, setting, name, (defaults or {}).get(setting.path))


def _given(args: argparse.Namespace, table: str = "run") -> dict[str, Any]:
    """The settings given on the command line, by dotted path."""
    prefix = f"{_PREFIX}{table}:"
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}


def _options(args: argparse.Namespace, table: SettingsTable, name: str) -> dict[str, Any]:
    return {s.path: s.default for s in table} | _given(args, name)


def _run_config(args: argparse.Namespace) -> RunConfig:
    return RunConfig.from_flat({"device": args.device, **_given(args)})


def _task(args: argparse.Namespace) -> TaskConfig:
    return TaskConfig(**{k[len("task."):]: v for k, v in _given(args).items() if k.startswith("task.")})


def _set_threads(args: argparse.Namespace) -> None:
    threads = getattr(args, "threads", None)
    if threads is None:
        return
    number("--threads", threads, integer=True, low=1)
    import torch

    torch.set_num_threads(threads)


def _train(args: argparse.Namespace) -> None:
    from loralab import api
    from loralab.reports.summary import summary
    from loralab.runs.artifacts import RECORD, WEIGHTS
    from loralab.runs.one_run import resolve_device
    from loralab.training.distributed import DataParallel

    parallel = DataParallel.from_environment(sharded=args.fsdp)  # torchrun's ranks, else one process
    if parallel.main:  # another rank could look after rank 0 has begun the record
        output_folder(args.out, "--out", forbid=(RECORD, WEIGHTS))
    _set_threads(args)
    given = _given(args)
    if args.legacy_freeze_head:
        given["strategy.train_head"] = False
    fixed: dict[str, Any] = {}
    if args.adapter:
        from loralab.runs.peft import read_peft_adapter

        if given.get("strategy.strategy", "lora") != "lora":
            raise LoralabError(f"--adapter continues training a LoRA adapter; it cannot use --strategy "
                               f"{given['strategy.strategy']}")
        adapter = read_peft_adapter(args.adapter)
        if "model" not in given and not adapter.base_model:
            raise LoralabError(f"{args.adapter}: the adapter names no base model; pass --model")
        fixed = {"model": adapter.base_model, **{f"strategy.{k}": v for k, v in _flat(adapter.strategy.__dict__).items()}}
        given = {k: v for k, v in given.items() if not k.startswith("strategy.")}
    config = RunConfig.from_flat({**fixed, **given})
    with parallel.joined(resolve_device(config.device)):
        record = api.train(config, args.out, progress=not args.quiet, adapter=args.adapter, parallel=parallel)
    if parallel.main:
        print(summary(record, args.out))


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    import dataclasses

    out: dict[str, Any] = {}
    for key, value in values.items():
        if dataclasses.is_dataclass(value):
            out.update(_flat({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _scoring_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    given = _given(args)
    return dict(run=args.run, adapter=args.adapter, model=args.model, task=_task(args),
                scoring=given.get("task.scoring"), batch_size=args.batch_size,
                max_length=given.get("training.max_length", SETTINGS.by_path["training.max_length"].default),
                device=args.device, progress=not args.quiet)


def _evaluate(args: argparse.Namespace) -> None:
    from loralab import api
    from loralab.metrics import METRICS

    _set_threads(args)
    values = api.evaluate(args.data, **_scoring_kwargs(args))
    for name, value in values.items():
        if name in METRICS:
            print(f"{METRICS[name].label:<9} {value:.4f}")
    count = "questions" if "questions" in values else "examples"
    print(f"{count:<9} {values[count]}")


def _predict(args: argparse.Namespace) -> None:
    from loralab import api

    output_file(args.out, "--out", inputs=[args.data])
    if args.scores:
        output_file(args.scores, "--scores", inputs=[args.data])
        if Path(args.scores).absolute() == Path(args.out).absolute():
            raise LoralabError(f"--scores {args.scores}: is the same file as --out")
    _set_threads(args)
    rows = api.predict(args.data, args.out, scores=args.scores, **_scoring_kwargs(args))
    print(f"wrote {rows} predictions to {args.out}" + (f" and scores to {args.scores}" if args.scores else ""))


def _generate(args: argparse.Namespace) -> None:
    from loralab import api

    number("--max-new-tokens", args.max_new_tokens, integer=True, low=1, high=4096)
    _set_threads(args)
    for prompt, text in zip(args.prompt, api.generate(args.prompt, run=args.run, model=args.model,
                                                      max_new_tokens=args.max_new_tokens, chat=args.chat,
                                                      device=args.device)):
        print(f"--- prompt\n{prompt}\n--- completion\n{text}")


def _merge(args: argparse.Namespace) -> None:
    from loralab import api

    output_folder(args.out, "--out", nonempty_ok=False)
    _set_threads(args)
    out = api.merge(args.run, args.out)
    print(f"wrote a standalone Hugging Face model to {out} (transformers' Auto classes load it)")


def _export_peft(args: argparse.Namespace) -> None:
    from loralab import api

    output_folder(args.out, "--out", nonempty_ok=False)
    _set_threads(args)
    out = api.export_peft(args.run, args.out)
    print(f"wrote a peft LoRA adapter to {out} (PeftModel.from_pretrained(base_model, {str(out)!r}) loads it)")


def _sweep(args: argparse.Namespace) -> None:
    import dataclasses

    from loralab import api
    from loralab.sweeps.experiment import load_experiment, packaged_experiment

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
    _set_threads(args)
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

        api.sweep(experiment, args.out, progress=not args.quiet, shard=shard, page=not args.no_report,
                  executor=ray_executor(args.ray or None, threads=args.threads or 1))
    else:
        import functools

        from loralab.runs import run
        from loralab.runs.one_run import resolve_device
        from loralab.training.distributed import DataParallel

        parallel = DataParallel.from_environment()  # under torchrun every run is data parallel
        with parallel.joined(resolve_device(args.device)):
            api.sweep(experiment, args.out, progress=not args.quiet and parallel.main, shard=shard,
                      run_fn=functools.partial(run, parallel=parallel), log=print if parallel.main else (lambda _: None),
                      page=not args.no_report and parallel.main)
        if not parallel.main:
            return
    if not args.no_report:
        report = api.report(args.out)
        print(f"report: {', '.join(str(f) for f in report.files)}")


def _intrinsic_dim(args: argparse.Namespace) -> None:
    from loralab import api
    from loralab.sweeps.dimension import DimensionConfig, measure
    from loralab.sweeps.intrinsic import SearchConfig

    output_folder(args.out, "--out")
    _set_threads(args)
    base = _run_config(args)
    o = IntrinsicOptions(**_options(args, INTRINSIC, "intrinsic"))
    search = SearchConfig(d_min=o.smallest_d(), d_max=o.d_max, per_decade=o.per_decade, resolution=o.resolution,
                          fraction=o.fraction)
    config = DimensionConfig(base=base, baseline_lr=o.baseline_lr, theta_lr=o.theta_lr, projection=o.projection,
                             subspace_seed=o.subspace_seed, search=search, metric=o.metric, train_head=o.train_head,
                             exclude=o.exclude, lr_reference_dim=o.lr_reference_dim, head_lr=o.head_lr)
    with warnings.catch_warnings():  # the head starts random and moves through the subspace: intended here
        warnings.filterwarnings("ignore", message="the task head")
        result, files = measure(config, args.out, progress=not args.quiet)
    label = f"d_int{round(100 * result.fraction)}"
    if result.d_int is None:
        print(f"{label}: not reached up to d = {max(d for d, _ in result.points)} "
              f"(threshold {result.threshold:.4f}, baseline {result.baseline:.4f})")
    else:
        print(f"{label} = {result.d_int}  ({o.metric} {dict(result.points)[result.d_int]:.4f} >= threshold "
              f"{result.threshold:.4f}, {result.fraction:.0%} of the baseline's {result.baseline:.4f})")
    report = api.report(args.out, metric=o.metric)
    print(f"wrote {', '.join(str(f) for f in list(files.values()) + list(report.files))}")


def _recommend(args: argparse.Namespace) -> None:
    from loralab import api
    from loralab.recommend import RecommendConfig, candidates, parse_budget, parse_memory

    output_folder(args.out, "--out")
    _set_threads(args)
    base = _run_config(args)
    o = RecommendOptions(**_options(args, RECOMMEND, "recommend"))
    config = RecommendConfig(base=base, candidates=candidates(o.models, o.strategies),
                             budget_seconds=parse_budget(o.budget),
                             memory_mb=parse_memory(o.memory) if o.memory else None, min_steps=o.min_steps,
                             eta=o.eta, rungs=o.rungs, bracket_size=o.bracket_size, pilot_valid=o.pilot_valid,
                             seed=o.search_seed, storage=o.storage, worker=o.worker, clock=o.budget_clock,
                             brackets=o.brackets)
    result = api.recommend(config, args.out, progress=not args.quiet, final=o.final)
    print(f"report: {Path(args.out) / 'report.md'}")
    if result.get("final"):
        print(f"winner: {result['winner']['candidate']}, {result['metric']} {result['final'][result['metric']]}")


def _report(args: argparse.Namespace) -> None:
    from loralab import api

    if args.out:
        output_folder(args.out, "--out")
    report = api.report(args.dir, args.out, metric=args.metric)
    print(report.markdown)
    print(f"wrote {', '.join(str(f) for f in report.files)}")


_TASK = ("task",)
_SCORED_RUN = ("train", "valid", "model", "task", "training.epochs", "training.batch_size", "training.max_length",
               "training.max_steps", "training.warmup_ratio", "training.seed", "train_limit", "valid_limit",
               "train_sample_seed", "training.precision", "training.trim_heap_every")


def build_parser() -> argparse.ArgumentParser:
    """The `loralab` command's parser; every run setting's option comes from `loralab.settings.SETTINGS`."""
    from loralab.metrics import METRICS

    parser = _Parser(prog="loralab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"loralab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="fine-tune a model on a task's data with one strategy",
                       description="Fine-tune a model on a task's data with one strategy; writes OUT/run.json and "
                                   "OUT/weights.safetensors.")
    t.add_argument("--out", required=True, help="run folder to write run.json and weights into")
    t.add_argument("--adapter", metavar="ADAPTER_DIR",
                   help="continue training a peft LoRA adapter (its settings replace --strategy and --lora-*)")
    t.add_argument("--fsdp", action="store_true", help="under torchrun: shard parameters, gradients and optimizer "
                   "state across the processes with FSDP2 (default: DDP, a whole copy on each)")
    t.add_argument("--freeze-head", dest="legacy_freeze_head", action="store_true", help=argparse.SUPPRESS)  # < 0.2
    _add_settings(t)
    t.set_defaults(func=_train, legacy_freeze_head=False)

    for name, func, help_ in (("predict", _predict, "write predictions (id, prediction) of a trained run, as a Kaggle submission"),
                              ("evaluate", _evaluate, "print a trained run's (or a base model's) metrics on a data file")):
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        source = p.add_mutually_exclusive_group()
        source.add_argument("--run", help="run folder written by 'loralab train'")
        source.add_argument("--adapter", metavar="ADAPTER_DIR", help="a peft LoRA adapter folder")
        p.add_argument("--model", help="base model for --adapter (default: its base_model_name_or_path); alone: "
                       "score this base model as it is (zero-shot; a decoder, since an encoder's head would be random)")
        p.add_argument("--data", required=True, help="data file of the run's task")
        p.add_argument("--batch-size", type=int, default=32, help="examples per forward pass (default: 32)")
        if name == "predict":
            p.add_argument("--out", required=True, help="submission CSV to write")
            p.add_argument("--scores", help="also write every option's score to this CSV (default: none)")
        _add_settings(p, _TASK + ("training.max_length",))
        p.set_defaults(func=func)

    g = sub.add_parser("generate", help="write a trained decoder's (or a base decoder's) completion of a prompt")
    source = g.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run folder written by 'loralab train' (a decoder)")
    source.add_argument("--model", help="a base decoder as it is (e.g. smollm2)")
    g.add_argument("--prompt", action="append", required=True, help="the prompt (repeat for several)")
    g.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate at most (default: 64)")
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
    i.add_argument("--out", required=True, help="folder for the runs (baseline, d-<d>), intrinsic.json/.md/.png")
    _add_settings(i, _SCORED_RUN)
    _add_settings(i, table=INTRINSIC, name="intrinsic")
    i.add_argument("--lr", dest=f"{_PREFIX}intrinsic:theta_lr", type=float, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # --theta-lr's name before 0.2
    i.add_argument("--head-direct", dest=f"{_PREFIX}intrinsic:train_head", action="store_const", const=True,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # before 0.2
    i.set_defaults(func=_intrinsic_dim)

    m = sub.add_parser("recommend", help="find the model, strategy and settings worth training on your data within "
                       "a time budget (pilot runs, successive halving, then the winner on all the data)",
                       description="Several workers can share one search: start `loralab recommend` with the same "
                       "options and --out in each, each with its own --worker name (one of them 'main', the default, "
                       "which trains the winner when its own budget is spent); on several machines give them one "
                       "--storage (an SQL URL, or a journal file on a shared disk) and --out on a shared disk.")
    m.add_argument("--out", required=True, help="folder for the study, the run folders and report.md")
    _add_settings(m, _SCORED_RUN + ("strategy.lora.targets", "strategy.lora.dropout"))
    _add_settings(m, table=RECOMMEND, name="recommend")
    m.set_defaults(func=_recommend)

    r = sub.add_parser("report", help="Markdown table and PNG plots from a sweep folder's run records")
    r.add_argument("dir", help="folder holding run folders (each with run.json)")
    r.add_argument("--out", help="where to write report.md and the plots (default: DIR)")
    r.add_argument("--metric", choices=list(METRICS),
                   help="metric to rank and plot by (default: the records' own headline metric, else map@3)")
    r.set_defaults(func=_report)

    for p in sub.choices.values():
        known = {o for action in p._actions for o in action.option_strings}
        if "--device" not in known:
            p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if not p.prog.endswith("report"):
            p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice); "
                           "1 is much faster on a CPU shared with other jobs")
    _required(t, i, m)
    return parser


def _required(train: argparse.ArgumentParser, *others: argparse.ArgumentParser) -> None:
    """`--train` is required wherever runs train; `--valid` where runs are compared."""
    for parser in (train, *others):
        for action in parser._actions:
            if action.dest in (f"{_PREFIX}run:train", f"{_PREFIX}recommend:budget") or (
                    parser is not train and action.dest == f"{_PREFIX}run:valid"):
                action.required = True


def _option(error: SettingError, parser: argparse.ArgumentParser) -> LoralabError:
    """A setting's error named by the option that sets it (`training.lr` -> `--lr`), where there is one."""
    known = {o for action in parser._actions for o in action.option_strings}
    if error.name.startswith("--"):
        return error
    for table in (SETTINGS, INTRINSIC, RECOMMEND):
        setting = table.by_path.get(error.name)
        if setting is not None and setting.option in known:
            return error.renamed(setting.option)
    option = "--" + error.name.replace("_", "-")  # a command's own setting (`d_max`)
    return error.renamed(option) if option in known else error


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, f"{_PREFIX}run:device"):
        args.device = getattr(args, f"{_PREFIX}run:device")
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
