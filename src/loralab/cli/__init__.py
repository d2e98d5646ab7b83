"""The `loralab` command: a thin layer over `loralab.api`, its options generated from `loralab.settings`.

User errors (`LoralabError`) print one line and exit with status 2; anything else is a bug and keeps
its traceback. Building the parser imports no torch, so `--help` is fast; each command imports what it
runs (`commands.py`), with options from the settings tables (`options.py`).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings

from loralab.cli import commands
from loralab.cli.offline import offline_sockets
from loralab.cli.options import (COMPARE, INTRINSIC, PREFIX, RECOMMEND, Parser, add_settings, given, mark_required,
                                 option_error)
from loralab.errors import LoralabError, disk_full
from loralab.validate import SettingError
from loralab.version import __version__

_TASK = ("task",)
_SCORED_RUN = ("train", "valid", "model", "task", "training.epochs", "training.batch_size", "training.max_length",
               "training.max_steps", "training.warmup_ratio", "training.seed", "train_limit", "valid_limit",
               "train_sample_seed", "training.precision", "training.trim_heap_every")


def build_parser() -> argparse.ArgumentParser:
    """The `loralab` command's parser; every run setting's option comes from `loralab.settings.SETTINGS`."""
    from loralab.metrics import METRICS

    parser = Parser(prog="loralab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"loralab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="fine-tune a model on a task's data with one strategy",
                       description="Fine-tune a model on a task's data with one strategy; writes OUT/run.json and "
                                   "OUT/weights.safetensors.")
    t.add_argument("--out", required=True, help="run folder to write run.json and weights into")
    t.add_argument("--adapter", metavar="ADAPTER_DIR",
                   help="continue training a peft LoRA adapter (its settings replace --strategy and --lora-*; default: none)")
    t.add_argument("--fsdp", action="store_true", help="under torchrun: shard parameters, gradients and optimizer "
                   "state across the processes with FSDP2 (default: DDP, a whole copy on each)")
    t.add_argument("--freeze-head", dest="legacy_freeze_head", action="store_true", help=argparse.SUPPRESS)  # < 0.2
    add_settings(t)
    t.add_argument("--config", metavar="FILE", help="a YAML or TOML file of this run's settings, with an experiment "
                   "file's keys (lr, lora_r, training.lr, ...); options given here override it (default: none)")
    t.set_defaults(func=commands.train, legacy_freeze_head=False)

    for name, func, help_ in (("predict", commands.predict, "write predictions (id, prediction) of a trained run, as a Kaggle submission"),
                              ("evaluate", commands.evaluate, "print a trained run's (or a base model's) metrics on a data file")):
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        source = p.add_mutually_exclusive_group()
        source.add_argument("--run", help="run folder written by 'loralab train' (default: none; give --run, --adapter or --model)")
        source.add_argument("--adapter", metavar="ADAPTER_DIR", help="a peft LoRA adapter folder (default: none)")
        p.add_argument("--model", help="base model for --adapter (default: its base_model_name_or_path); alone: "
                       "score this base model as it is (zero-shot; a decoder, since an encoder's head would be random)")
        p.add_argument("--data", required=True, help="data file of the run's task")
        p.add_argument("--batch-size", type=int, default=32, help="examples per forward pass (default: 32)")
        if name == "predict":
            p.add_argument("--out", required=True, help="submission CSV to write")
            p.add_argument("--scores", help="also write every option's score to this CSV (default: none)")
        add_settings(p, _TASK + ("training.max_length",))
        p.set_defaults(func=func)

    g = sub.add_parser("generate", help="write a trained decoder's (or a base decoder's) completion of a prompt")
    source = g.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run folder written by 'loralab train' (a decoder; default: none, give --run or --model)")
    source.add_argument("--model", help="a base decoder as it is, e.g. smollm2 (default: none)")
    g.add_argument("--prompt", action="append", required=True, help="the prompt (repeat for several)")
    g.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate at most (default: 64)")
    g.add_argument("--chat", action="store_true", help="send the prompt as a user message through the chat template")
    g.set_defaults(func=commands.generate)

    for name, func, help_, out_help in (
        ("merge", commands.merge, "merge a run's trained weights into a standalone Hugging Face model folder",
         "model folder to write (weights, config, tokenizer)"),
        ("export-peft", commands.export_peft, "write a LoRA, DoRA, VeRA or IA3 run as a peft adapter folder",
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
                   "can share one sweep folder (e.g. two processes with --shard 1/2 and --shard 2/2; default: every run)")
    s.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run each planned run as a Ray task on the "
                   "cluster at ADDRESS (host:port, ray://host:10001 or auto; alone: a local Ray instance); records "
                   "and weights come back to --out. Needs the 'ray' extra (default: no Ray, the runs run in this process)")
    s.set_defaults(func=commands.sweep)

    i = sub.add_parser("intrinsic-dim", help="measure a task's intrinsic dimension: full baseline, then subspace "
                       "runs over d, reporting the smallest d reaching 90%% of the baseline")
    i.add_argument("--out", required=True, help="folder for the runs (baseline, d-<d>), intrinsic.json/.md/.png")
    add_settings(i, _SCORED_RUN)
    add_settings(i, table=INTRINSIC, name="intrinsic")
    i.add_argument("--lr", dest=f"{PREFIX}intrinsic:theta_lr", type=float, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # --theta-lr's name before 0.2
    i.add_argument("--head-direct", dest=f"{PREFIX}intrinsic:train_head", action="store_const", const=True,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # before 0.2
    i.set_defaults(func=commands.intrinsic_dim)

    m = sub.add_parser("recommend", help="find the model, strategy and settings worth training on your data within "
                       "a time budget (pilot runs, successive halving, then the winner on all the data)",
                       description="Several workers can share one search: start `loralab recommend` with the same "
                       "options and --out in each, each with its own --worker name (one of them 'main', the default, "
                       "which trains the winner when its own budget is spent); on several machines give them one "
                       "--storage (an SQL URL, or a journal file on a shared disk) and --out on a shared disk.")
    m.add_argument("--out", required=True, help="folder for the study, the run folders and report.md")
    add_settings(m, _SCORED_RUN + ("strategy.lora.targets", "strategy.lora.dropout"))
    add_settings(m, table=RECOMMEND, name="recommend")
    m.set_defaults(func=commands.recommend)

    c = sub.add_parser("compare", help="judge fine-tuning methods each at its own best settings within a time budget "
                       "(a successive-halving bracket per method, then its best setting with seeds, then a ranking)",
                       description="Each method's learning rate and key settings are searched in a bracket of its own, "
                       "so a slow starter competes only with itself; each method's best setting is then trained on all "
                       "the data with --seeds seeds, and OUT/report.md ranks the methods with noise verdicts and costs. "
                       "Rerun the same command to resume.")
    c.add_argument("--out", required=True, help="folder for the run folders, compare.json, report.md and report.html")
    add_settings(c, _SCORED_RUN)
    add_settings(c, table=COMPARE, name="compare")
    c.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run the pilots and final runs as Ray tasks, "
                   "as sweep --ray does (default: in this process)")
    c.set_defaults(func=commands.compare)

    r = sub.add_parser("report", help="Markdown table and PNG plots from a sweep folder's run records")
    r.add_argument("dir", help="folder holding run folders (each with run.json)")
    r.add_argument("--out", help="where to write report.md and the plots (default: DIR)")
    r.add_argument("--metric", choices=list(METRICS),
                   help="metric to rank and plot by (default: the records' own headline metric, else map@3)")
    r.set_defaults(func=commands.report)

    for p in sub.choices.values():
        known = {o for action in p._actions for o in action.option_strings}
        if "--device" not in known:
            p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if not p.prog.endswith("report"):
            p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice); "
                           "1 is much faster on a CPU shared with other jobs")
    mark_required(t, i, m, c)
    for action in t._actions:  # train's --train may come from its --config file instead (checked there)
        if action.dest == f"{PREFIX}run:train":
            action.required = False
    return parser



def _named_hosts(args: argparse.Namespace) -> tuple[str, ...]:
    """The machines a command's own options name (sweep --ray ADDRESS, recommend --storage URL): reachable offline."""
    from urllib.parse import urlsplit

    named = [getattr(args, "ray", None), given(args, "recommend").get("storage")]
    return tuple(urlsplit(n if "://" in n else f"//{n}").hostname or "" for n in named if isinstance(n, str) and n)


def _one_line_warnings():
    """A `warnings.showwarning` that prints as the CLI prints errors: one line on stderr, no source
    line under it, and each text once per command (a report reads its records for every output)."""
    said: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text not in said:
            said.add(text)
            print(f"loralab: warning: {text}", file=file or sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, f"{PREFIX}run:device"):
        args.device = getattr(args, f"{PREFIX}run:device")
    try:
        with warnings.catch_warnings(), offline_sockets(given(args).get("offline") is False, _named_hosts(args)):
            warnings.simplefilter("default")
            warnings.showwarning = _one_line_warnings()
            try:
                args.func(args)
            except SettingError as e:
                raise option_error(e, parser._subparsers._group_actions[0].choices[args.command]) from None
    except LoralabError as e:
        print(f"loralab: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write no layer below caught: still the user's disk, not a bug
        if not (disk_full(e) or e.errno == errno.ENAMETOOLONG):
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"loralab: error: {where}cannot write ({os.strerror(e.errno)})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loralab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
