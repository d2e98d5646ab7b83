"""The Markdown a report writes: the sweep's `report.md` (an intrinsic-dimension measurement's page: `intrinsic.py`)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from loralab.reports.rows import DEFAULT_TASK, Section, against_best, higher_is_better, metric_label, settings_text


def _mean_sd(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _count(counts: dict[str, Any], prefix: str, task: str) -> tuple[Any, str]:
    """(how many, noun) of the questions or examples `counts` holds under `prefix` + the noun: multiple-choice
    records count questions, other tasks' records count examples."""
    for noun in ("questions", "examples"):
        if prefix + noun in counts:
            return counts[prefix + noun], noun
    return "?", "questions" if task == DEFAULT_TASK else "examples"


def _summary(section: Section) -> list[str]:
    records = section.records
    first = records[0]
    valid = next((r["valid"] for r in records if "valid" in r), {})
    n_train, train_noun = _count(first, "train_", section.task)
    n_valid, valid_noun = _count(valid, "", section.task)
    model = first.get("base_model", {}).get("name", "?")
    lines = [f"{len(records)} runs in {len(section.rows)} rows; base model {model} "
             f"({first.get('total_params', 0):,} parameters); {n_train} training {train_noun}, {n_valid} validation "
             f"{valid_noun}. Mean ± sample standard deviation over seeds.", ""]
    machines = sorted({f"{r.get('device', '?')} ({r.get('machine', '?')})" for r in records})
    if len(machines) > 1:  # times and memory only compare within one machine and thread count
        lines += ["Runs ran on different devices or thread counts, so their times and memory do not compare "
                  "directly: " + "; ".join(machines) + ".", ""]
    else:
        lines += [f"Device: {machines[0]}.", ""]
    return lines


def _table(section: Section) -> list[str]:
    columns = section.metrics or [section.metric]  # a column for the divergence notes even when no run scored
    lines = ["| run | strategy | settings | trainable params | train time (s) | peak memory (MB) | "
             + "".join(f"{metric_label(m)} | " for m in columns) + "seeds |",
             "|---|---|---|---:|---:|---:|" + "---:|" * len(columns) + "---:|"]
    for row in section.rows:
        ok, bad = row.completed, row.diverged
        first = row.records[0]
        time_ = _mean_sd([r["train_seconds"] for r in row.records if "train_seconds" in r], 0)
        memory = _mean_sd([r["peak_memory_mb"] for r in row.records if "peak_memory_mb" in r], 0)
        cells = [_mean_sd(row.values(m)) for m in columns]
        if bad:
            steps = ", ".join(str(r.get("diverged_at_step")) for r in bad)
            note = f"diverged at step {steps}" if not ok else f"({len(bad)} of {len(row.records)} diverged at step {steps})"
            cells[0] = note if not ok else f"{cells[0]} {note}"
        seeds = ", ".join(str(r["hyperparameters"].get("training.seed")) for r in row.records)
        lines.append(f"| {row.label} | {row.strategy} | {settings_text(row)} | {first.get('trainable_params', 0):,} | "
                     f"{time_} | {memory} | {' | '.join(cells)} | {seeds} |")
    return lines


def _differences(section: Section, heading: str) -> list[str]:
    metric = section.metric
    verdicts = against_best(section.rows, metric)
    if verdicts is None:
        return []
    best, pooled = verdicts.best, verdicts.pooled
    name = metric_label(metric)
    direction = "" if higher_is_better(metric) else ", lower is better"
    lines = [f"{heading} Against the best row ({best.label}: {name} {best.mean(metric):.3f}{direction})", ""]
    if pooled is None:
        lines += ["No row has two or more seeds, so training noise is unknown: no difference below can be "
                  "called real or noise.", ""]
    else:
        lines += [f"Pooled seed-to-seed standard deviation of {name}: {pooled:.4f}. A difference is *within noise* "
                  "when it is smaller than twice its standard error (single-seed rows borrow the pooled deviation).",
                  ""]
    lines += [f"| run | settings | Δ {name} | 2 × s.e. | verdict |", "|---|---|---:|---:|---|"]
    for c in verdicts.others:
        bound = "–" if c.se is None else f"{2 * c.se:.3f}"
        lines.append(f"| {c.row.label} | {settings_text(c.row)} | {c.diff:+.3f} | {bound} | {c.verdict} |")
    valid = best.completed[0]["valid"]
    noun = "questions" if "questions" in valid else "examples"
    n, acc = valid.get(noun, 0), best.mean("accuracy")
    if n and acc is not None:  # the binomial error only makes sense for a proportion
        lines += ["", f"Sampling error of the validation set itself ({n} {noun}): accuracy "
                      f"{acc:.3f} ± {math.sqrt(acc * (1 - acc) / n):.3f} (binomial standard error); "
                      "seed noise above is measured on this same fixed set."]
    return lines + [""]


def _curves(section: Section, heading: str) -> list[str]:
    """The runs evaluated during training: their curve of the headline metric, best and kept step."""
    metric = section.metric
    runs = [(row, r) for row in section.rows for r in row.records if r.get("curve")]
    if not runs:
        return []
    lines = [f"{heading} {metric_label(metric)} during training", "",
             f"| run | seed | {metric_label(metric)} by step | best (step) | kept step | stopped early at |",
             "|---|---:|---|---:|---:|---:|"]
    for row, record in runs:
        points = [(p["step"], p[metric]) for p in record["curve"] if isinstance(p.get(metric), (int, float))]
        stride = max(1, -(-len(points) // 12))  # a dozen points say the curve's shape; the plots have them all
        curve = ", ".join(f"{step}: {value:.3f}" for step, value in points[::stride])
        if points:
            pick = max if higher_is_better(metric) else min
            step, value = pick(points, key=lambda point: point[1])
            best = f"{value:.3f} ({step})"
        else:
            best = "–"
        lines.append(f"| {row.label} | {record.get('hyperparameters', {}).get('training.seed', '?')} | {curve} | {best} | "
                     f"{record.get('kept_step', '–')} | {record.get('stopped_early_at_step', '–')} |")
    return lines + [""]


def _section(section: Section, heading: str) -> list[str]:
    return _summary(section) + _table(section) + [""] + _differences(section, heading) + _curves(section, heading)


def report_markdown(sections: list[Section], skipped: list[str], title: str, description: str = "",
                    plots: list[Path] = ()) -> str:
    """The text of `report.md`: a summary, the table and the rows against the best, per data set when
    there are several; then what was left out, and the plots."""
    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    if len(sections) == 1:
        lines += _section(sections[0], "##")
    else:
        runs = sum(len(s.records) for s in sections)
        lines += [f"{runs} runs on {len(sections)} data sets, one section each: a metric measured on one data set "
                  "does not compare with one measured on another.", ""]
        for section in sections:
            lines += [f"## {section.name}", ""] + _section(section, "###")
    if skipped:
        lines += ["## Records left out", ""] + [f"- {s}" for s in skipped] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)
