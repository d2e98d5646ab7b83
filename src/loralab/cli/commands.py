"""The `loralab` subcommands: each reads its options, checks its outputs, calls `loralab.api` and prints."""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path
from typing import Any

from loralab.cli.options import (COMPARE, INTRINSIC, RECOMMEND, given, options, run_config, set_threads, task_config)
from loralab.errors import LoralabError
from loralab.settings import SETTINGS, RunConfig
from loralab.settings.commands import CompareOptions, IntrinsicOptions, RecommendOptions
from loralab.validate import number, output_file, output_folder

def train(args: argparse.Namespace) -> None:
    from loralab import api
    from loralab.reports.summary import summary
    from loralab.runs.one_run import resolve_device
    from loralab.training.distributed import DataParallel

    parallel = DataParallel.from_environment(sharded=args.fsdp)  # torchrun's ranks, else one process
    if parallel.main:  # another rank could look after rank 0 has begun the record
        output_folder(args.out, "--out")
    set_threads(args)
    chosen = given(args)
    if args.config:  # the file's settings, then the options given here over them
        from loralab.sweeps.experiment import read_settings

        chosen = {**read_settings(args.config), **chosen}
    if not chosen.get("train"):
        raise LoralabError("the following arguments are required: --train (or train in the --config file)")
    if args.legacy_freeze_head:
        chosen["strategy.train_head"] = False
    if args.adapter:
        from loralab.runs.peft import read_peft_adapter

        if chosen.get("strategy.strategy", "lora") != "lora":
            raise LoralabError(f"--adapter continues training a LoRA adapter; it cannot use --strategy "
                               f"{chosen['strategy.strategy']}")
        adapter = read_peft_adapter(args.adapter)  # its settings replace --strategy and --lora-*
        model = chosen.get("model") or adapter.base_model
        if not model:
            raise LoralabError(f"{args.adapter}: the adapter names no base model; pass --model")
        chosen = {k: v for k, v in chosen.items() if not k.startswith("strategy.")}
        config = dataclasses.replace(RunConfig.from_flat(chosen), model=model, strategy=adapter.strategy)
    else:
        config = RunConfig.from_flat(chosen)
    if parallel.main:  # a finished run, another run or an unfinished one without a checkpoint is refused
        from loralab.runs.checkpoint import check_folder

        check_folder(Path(args.out), config)
    with parallel.joined(resolve_device(config.device)):
        record = api.train(config, args.out, progress=not args.quiet, adapter=args.adapter, parallel=parallel)
    if parallel.main:
        print(summary(record, args.out))


def _scoring_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    chosen = given(args)
    return dict(run=args.run, adapter=args.adapter, model=args.model, task=task_config(args),
                scoring=chosen.get("task.scoring"), batch_size=args.batch_size,
                max_length=chosen.get("training.max_length", SETTINGS.by_path["training.max_length"].default),
                device=args.device, progress=not args.quiet)


def evaluate(args: argparse.Namespace) -> None:
    from loralab import api
    from loralab.metrics import METRICS, shown

    set_threads(args)
    values = api.evaluate(args.data, **_scoring_kwargs(args))
    for name, value in values.items():
        if name in METRICS:
            print(f"{METRICS[name].label:<9} {shown(value)}")
    count = "questions" if "questions" in values else "examples"
    print(f"{count:<9} {values[count]}")


def predict(args: argparse.Namespace) -> None:
    from loralab import api

    output_file(args.out, "--out", inputs=[args.data])
    if args.scores:
        output_file(args.scores, "--scores", inputs=[args.data])
        if Path(args.scores).absolute() == Path(args.out).absolute():
            raise LoralabError(f"--scores {args.scores}: is the same file as --out")
    set_threads(args)
    rows = api.predict(args.data, args.out, scores=args.scores, **_scoring_kwargs(args))
    print(f"wrote {rows} predictions to {args.out}" + (f" and scores to {args.scores}" if args.scores else ""))


def generate(args: argparse.Namespace) -> None:
    from loralab import api

    number("--max-new-tokens", args.max_new_tokens, integer=True, low=1, high=4096)
    set_threads(args)
    for prompt, text in zip(args.prompt, api.generate(args.prompt, run=args.run, model=args.model,
                                                      max_new_tokens=args.max_new_tokens, chat=args.chat,
                                                      device=args.device)):
        print(f"--- prompt\n{prompt}\n--- completion\n{text}")


def merge(args: argparse.Namespace) -> None:
    from loralab import api

    output_folder(args.out, "--out", nonempty_ok=False)
    set_threads(args)
    out = api.merge(args.run, args.out)
    print(f"wrote a standalone Hugging Face model to {out} (transformers' Auto classes load it)")


def export_peft(args: argparse.Namespace) -> None:
    from loralab import api

    output_folder(args.out, "--out", nonempty_ok=False)
    set_threads(args)
    out = api.export_peft(args.run, args.out)
    print(f"wrote a peft LoRA adapter to {out} (PeftModel.from_pretrained(base_model, {str(out)!r}) loads it)")


def sweep(args: argparse.Namespace) -> None:
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
    set_threads(args)
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
                      page=not args.no_report and parallel.main, lock=parallel.main)
        if not parallel.main:
            return
    if not args.no_report:
        report = api.report(args.out)
        print(f"report: {', '.join(str(f) for f in report.files)}")


def intrinsic_dim(args: argparse.Namespace) -> None:
    from loralab import api
    from loralab.sweeps.dimension import DimensionConfig
    from loralab.sweeps.intrinsic import SearchConfig

    output_folder(args.out, "--out")
    set_threads(args)
    base = run_config(args)
    o = IntrinsicOptions(**options(args, INTRINSIC, "intrinsic"))
    search = SearchConfig(d_min=o.smallest_d(), d_max=o.d_max, per_decade=o.per_decade, resolution=o.resolution,
                          fraction=o.fraction)
    config = DimensionConfig(base=base, baseline_lr=o.baseline_lr, theta_lr=o.theta_lr, projection=o.projection,
                             subspace_seed=o.subspace_seed, search=search, metric=o.metric, train_head=o.train_head,
                             exclude=o.exclude, lr_reference_dim=o.lr_reference_dim, head_lr=o.head_lr)
    with warnings.catch_warnings():  # the head starts random and moves through the subspace: intended here
        warnings.filterwarnings("ignore", message="the task head")
        result, files = api.intrinsic_dimension(config, args.out, progress=not args.quiet)
    label = f"d_int{round(100 * result.fraction)}"
    if result.d_int is None:
        print(f"{label}: not reached up to d = {max(d for d, _ in result.points)} "
              f"(threshold {result.threshold:.4f}, baseline {result.baseline:.4f})")
    else:
        print(f"{label} = {result.d_int}  ({o.metric} {dict(result.points)[result.d_int]:.4f} >= threshold "
              f"{result.threshold:.4f}, {result.fraction:.0%} of the baseline's {result.baseline:.4f})")
    report = api.report(args.out, metric=o.metric)
    print(f"wrote {', '.join(str(f) for f in list(files.values()) + list(report.files))}")


def recommend(args: argparse.Namespace) -> None:
    from loralab import api
    from loralab.recommendation import RecommendConfig, candidates, parse_budget, parse_memory
    from loralab.recommendation.space import describe
    from loralab.recommendation.driver import budget_line

    output_folder(args.out, "--out")
    set_threads(args)
    base = run_config(args)
    o = RecommendOptions(**options(args, RECOMMEND, "recommend"))
    config = RecommendConfig(base=base, candidates=candidates(o.models, o.strategies, **o.space()),
                             budget_seconds=parse_budget(o.budget),
                             memory_mb=parse_memory(o.memory) if o.memory else None, min_steps=o.min_steps,
                             eta=o.eta, rungs=o.rungs, bracket_size=o.bracket_size, pilot_valid=o.pilot_valid,
                             seed=o.search_seed, storage=o.storage, worker=o.worker, clock=o.budget_clock,
                             brackets=o.brackets, grid=o.grid)
    result = api.recommend(config, args.out, progress=not args.quiet, final=o.final)
    if o.grid:
        best = result["best"]
        print(f"grid: {Path(args.out) / 'grid.md'} ({len(result['rows'])} settings, "
              f"{result['spent_seconds']['grid']:.0f} s)")
        if best:
            print(f"best: {best['candidate']} ({describe(best['settings'])}), {result['metric']} "
                  f"{best[result['metric']]:.4f}")
        return
    print(f"report: {Path(args.out) / 'report.md'}")
    if result.get("final"):
        final = result["final"]
        print(f"winner: {result['winner']['candidate']}, {result['metric']} {final[result['metric']]} "
              f"({final['steps']} steps; its longest pilot {final['pilot_steps']})")
    print(budget_line(result))


def compare(args: argparse.Namespace) -> None:
    from loralab import api
    from loralab.comparison import CompareConfig, parse_methods, parse_minutes

    output_folder(args.out, "--out")
    o = CompareOptions(**options(args, COMPARE, "compare"))
    config = CompareConfig(base=run_config(args), methods=parse_methods(o.methods),
                           budget_seconds=parse_minutes(o.budget), seeds=o.seeds, bracket_size=o.bracket_size,
                           min_steps=o.min_steps, eta=o.eta, rungs=o.rungs, pilot_valid=o.pilot_valid,
                           pilot_seeds=o.pilot_seeds, clock=o.budget_clock, metric=o.metric)
    executor = None
    if args.ray is not None:
        from loralab.sweeps.on_ray import ray_executor

        executor = ray_executor(args.ray or None, threads=args.threads or 1)
    set_threads(args)
    result = api.compare(config, args.out, progress=not args.quiet, executor=executor)
    print(result["answer"])
    print(f"report: {Path(args.out) / 'report.md'}, {Path(args.out) / 'report.html'}")


def report(args: argparse.Namespace) -> None:
    from loralab import api

    if args.out:
        output_folder(args.out, "--out")
    report = api.report(args.dir, args.out, metric=args.metric)
    print(report.markdown)
    print(f"wrote {', '.join(str(f) for f in report.files)}")
