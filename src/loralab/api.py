"""loralab's Python API: the functions the `loralab` command itself calls, one per thing a user does.

    import loralab
    from loralab.settings import RunConfig, StrategyConfig, TrainConfig

    config = RunConfig(train="train.csv", valid="valid.csv", strategy=StrategyConfig("lora"),
                       training=TrainConfig(lr=1e-3))
    record = loralab.train(config, "runs/lora")          # run.json's record, as a dict
    print(loralab.evaluate("valid.csv", run="runs/lora"))  # {"map@3": ..., "accuracy": ...}

Every setting is a field of `loralab.settings.RunConfig` (and the configs nested in it); errors in what
a user gives are `loralab.errors.LoralabError`, one line each.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

from loralab.errors import LoralabError
from loralab.generation import generate as _complete
from loralab.reports import Report, write_report
from loralab.runs import load_run, run as _run
from loralab.runs.artifacts import _atomic_write
from loralab.runs.merge import merge_run
from loralab.runs.peft import export_peft as _write_adapter, read_peft_adapter
from loralab.runs.scoring import score_file
from loralab.settings import RunConfig, TaskConfig
from loralab.sweeps.dimension import DimensionConfig, measure
from loralab.sweeps.experiment import Experiment, load_experiment
from loralab.sweeps.sweep import SweepResult, sweep as _run_all

__all__ = ["compare", "evaluate", "export_peft", "generate", "intrinsic_dimension", "load_run", "merge", "predict", "recommend",
           "report", "sweep", "train"]


def train(config: RunConfig, out: str | Path, *, progress: bool = True, adapter: str | Path | None = None,
          parallel: Any = None) -> dict[str, Any]:
    """Train one run into the folder `out` and return its record (what `run.json` holds).

    `adapter` continues training a peft LoRA adapter (its settings replace the config's strategy);
    `parallel` is a `loralab.training.distributed.DataParallel` under torchrun (None: one process)."""
    extra = {"parallel": parallel} if parallel is not None else {}
    return _run(config, out, progress=progress, adapter=read_peft_adapter(adapter) if adapter else None, **extra)


def evaluate(data: str | Path, *, run: str | Path | None = None, adapter: str | Path | None = None,
             model: str | None = None, task: TaskConfig | None = None, scoring: str | None = None,
             batch_size: int = 32, max_length: int = 256, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """The metrics of a trained run (or a peft adapter, or a base model as it is) on a labelled data file,
    with the number of examples scored (`questions` or `examples`)."""
    scored = score_file(data, run=run, adapter=adapter, model=model, task=task, scoring=scoring, labelled=True,
                        batch_size=batch_size, max_length=max_length, device=device, progress=progress)
    values = dict(scored.metrics())
    values["questions" if "questions" in values else "examples"] = len(scored.items)
    return values


def predict(data: str | Path, out: str | Path, *, scores: str | Path | None = None, run: str | Path | None = None,
            adapter: str | Path | None = None, model: str | None = None, task: TaskConfig | None = None,
            scoring: str | None = None, batch_size: int = 32, max_length: int = 256, device: str = "auto",
            progress: bool = True) -> int:
    """Write predictions for `data` to the CSV `out` (labels as in the training file; MAP@3's top three
    letters for multiple choice), and every option's score to `scores` if given; returns the rows written."""
    scored = score_file(data, run=run, adapter=adapter, model=model, task=task, scoring=scoring, labelled=False,
                        batch_size=batch_size, max_length=max_length, device=device, progress=progress)
    header, rows, score_header, score_rows = scored.predictions()
    _write_csv(out, header, rows)
    if scores and score_header:
        _write_csv(scores, score_header, score_rows)
    return len(rows)


def _write_csv(path: str | Path, header: list[str], rows: list[list[Any]]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    _atomic_write(Path(path), write)


def merge(run: str | Path, out: str | Path) -> Path:
    """Merge a run's trained weights into a standalone Hugging Face model folder that transformers' Auto
    classes load; returns the folder."""
    return merge_run(run, out)


def export_peft(run: str | Path, out: str | Path) -> Path:
    """Write a LoRA (DoRA, PiSSA, OLoRA), VeRA or IA3 run as a peft adapter folder
    (`PeftModel.from_pretrained(base, out)` loads it)."""
    if not Path(run).is_dir():
        raise LoralabError(f"{run}: no such run folder")
    return _write_adapter(load_run(run, device="cpu"), out, run_dir=run)


def generate(prompts: list[str], *, run: str | Path | None = None, model: str | None = None,
             max_new_tokens: int = 64, chat: bool = False, device: str = "auto") -> list[str]:
    """Greedy completions of each prompt by a trained decoder run, or a base decoder as it is."""
    return _complete(run=run, model=model, prompts=prompts, max_new_tokens=max_new_tokens, chat=chat, device=device)


def sweep(experiment: str | Path | Experiment, out: str | Path, *, shard: tuple[int, int] = (1, 1),
          progress: bool = True, page: bool = True, log: Callable[[str], None] = print, run_fn: Any = None,
          executor: Any = None, lock: bool = True) -> SweepResult:
    """Run an experiment file's (or `Experiment`'s) runs that are not done yet into `out`, one folder per run.

    A sweep resumes where it stopped; `shard` (k, n) runs every n-th planned run from the k-th, so n
    processes can share one folder; `executor` runs them elsewhere (`loralab.sweeps.on_ray.ray_executor`)."""
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    return _run_all(experiment, out, progress=progress, shard=shard, page=page, log=log, run_fn=run_fn,
                   executor=executor, lock=lock)


def intrinsic_dimension(config: DimensionConfig, out: str | Path, *, progress: bool = True):
    """Measure a task's intrinsic dimension (Li et al. 2018): a full fine-tuning baseline, then random-subspace
    runs over d, and the smallest d that reaches `config.search.fraction` of the baseline. Returns the result
    and the files written (intrinsic.json, .md, .png)."""
    return measure(config, out, progress=progress)


def report(folder: str | Path, out: str | Path | None = None, *, metric: str | None = None) -> Report:
    """Write report.md, plots and report.html for the run records under `folder` (into `out`, else `folder`).

    A folder `compare` or `recommend` wrote holds a report of its own, which ranks its final runs (its
    pilots trained on part of the data and were scored on part of the validation set): reported in
    place, that report is written again from compare.json or recommendation.json, never replaced;
    reported into another `out`, the per-run report covers the final runs only."""
    folder = Path(folder)
    own = _own_report(folder)
    if own is None:
        return write_report(folder, out, metric=metric)
    kind, rewrite, finals = own
    if out is None or Path(out).resolve() == folder.resolve():
        if metric is not None:
            raise LoralabError(f"--metric: {folder} holds a {kind} report, ranked by the metric it judged by; "
                               "give --out to report its final runs by another metric")
        return Report(rows=[], skipped=[], files=rewrite(folder), markdown=(folder / "report.md").read_text())
    return write_report(folder / finals, out, metric=metric)


def _own_report(folder: Path) -> tuple[str, Callable[[Path], list[Path]], str] | None:
    """(the command, what rewrites the folder's own report and returns the files written, the subfolder of
    its final runs) when `compare` or `recommend` wrote the folder; None for any other folder."""
    if (folder / "compare.json").is_file():
        from loralab.comparison.report import write_report as rewrite

        return "compare", rewrite, "finals"
    if (folder / "recommendation.json").is_file():
        from loralab.recommendation.report import write_report as report_md

        return "recommend", lambda f: [report_md(f)], "final"
    return None


def compare(config: Any, out: str | Path, *, progress: bool = True, executor: Any = None) -> dict[str, Any]:
    """Judge fine-tuning methods each at its own best settings within a time budget
    (`loralab.comparison.CompareConfig`): a successive-halving bracket per method, its best setting trained
    on all the data with seeds, then `compare.json`, `report.md` and `report.html` in `out`; returns what
    compare.json holds. `executor`: where the runs run, as for `sweep` (None: in this process)."""
    from loralab.comparison import compare as judge  # optuna loads only for a comparison

    return judge(config, out, progress=progress, executor=executor)


def recommend(config: Any, out: str | Path, *, progress: bool = True, final: bool = True) -> dict[str, Any]:
    """Search for the model, strategy and settings worth training within a time budget
    (`loralab.recommendation.RecommendConfig`), train the winner on all the data unless `final` is off, and
    write the report; returns the search's result. With `config.grid`, every setting of the (finite)
    space is trained on all the data instead (`grid.json`, `grid.md`), and what grid.json holds is returned."""
    if config.grid:
        from loralab.recommendation.grid import run_grid

        return run_grid(config, out, progress=progress)
    from loralab.recommendation import recommend as search  # optuna loads only for a search

    return search(config, out, progress=progress, final=final)


