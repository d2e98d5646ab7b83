"""The Markdown a report writes: the sweep's `report.md` and an intrinsic-dimension measurement's page."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loralab.reports.rows import Row, compare, pooled_sd, settings_text

if TYPE_CHECKING:
    from loralab.intrinsic import IntrinsicResult


def _mean_sd(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _table(rows: list[Row], metric: str) -> list[str]:
    lines = ["| run | strategy | settings | trainable params | train time (s) | peak memory (MB) | MAP@3 | accuracy | seeds |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ok, bad = row.completed, row.diverged
        first = row.records[0]
        time_ = _mean_sd([r["train_seconds"] for r in row.records if "train_seconds" in r], 0)
        memory = _mean_sd([r["peak_memory_mb"] for r in row.records if "peak_memory_mb" in r], 0)
        maps, accs = _mean_sd(row.values("map@3")), _mean_sd(row.values("accuracy"))
        if bad:
            steps = ", ".join(str(r.get("diverged_at_step")) for r in bad)
            note = f"diverged at step {steps}" if not ok else f"({len(bad)} of {len(row.records)} diverged at step {steps})"
            maps = note if not ok else f"{maps} {note}"
            accs = "–" if not ok else accs
        seeds = ", ".join(str(r["hyperparameters"].get("training.seed")) for r in row.records)
        lines.append(f"| {row.label} | {row.strategy} | {settings_text(row)} | {first.get('trainable_params', 0):,} | "
                     f"{time_} | {memory} | {maps} | {accs} | {seeds} |")
    return lines


def _differences(rows: list[Row], metric: str) -> list[str]:
    scored = [r for r in rows if r.mean(metric) is not None]
    if len(scored) < 2:
        return []
    best = max(scored, key=lambda r: r.mean(metric))
    pooled = pooled_sd(rows, metric)
    name = "MAP@3" if metric == "map@3" else metric
    lines = [f"## Against the best row ({best.label}: {name} {best.mean(metric):.3f})", ""]
    if pooled is None:
        lines += ["No row has two or more seeds, so training noise is unknown: no difference below can be "
                  "called real or noise.", ""]
    else:
        lines += [f"Pooled seed-to-seed standard deviation of {name}: {pooled:.4f}. A difference is *within noise* "
                  "when it is smaller than twice its standard error (single-seed rows borrow the pooled deviation).",
                  ""]
    lines += [f"| run | settings | Δ {name} | 2 × s.e. | verdict |", "|---|---|---:|---:|---|"]
    for row in scored:
        if row is best:
            continue
        diff, se = compare(row, best, metric, pooled)
        if se is None:
            verdict, bound = "noise unknown (single seed)", "–"
        else:
            verdict = "within noise" if abs(diff) < 2 * se else "worse beyond noise"
            bound = f"{2 * se:.3f}"
        lines.append(f"| {row.label} | {settings_text(row)} | {diff:+.3f} | {bound} | {verdict} |")
    questions = best.completed[0]["valid"].get("questions", 0)
    acc = best.mean("accuracy")
    if questions:
        lines += ["", f"Sampling error of the validation set itself ({questions} questions): accuracy "
                      f"{acc:.3f} ± {math.sqrt(acc * (1 - acc) / questions):.3f} (binomial standard error); "
                      "seed noise above is measured on this same fixed set."]
    return lines + [""]


def report_markdown(rows: list[Row], skipped: list[str], metric: str, title: str, description: str = "",
                    plots: list[Path] = ()) -> str:
    """The text of `report.md`: a summary, the table, the rows against the best, what was left out, the plots."""
    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    records = [r for row in rows for r in row.records]
    if records:
        first = records[0]
        valid = next((r["valid"] for r in records if "valid" in r), {})
        lines += [f"{len(records)} runs in {len(rows)} rows; base model {first.get('base_model', {}).get('name', '?')} "
                  f"({first.get('total_params', 0):,} parameters); {first.get('train_questions', '?')} training "
                  f"questions, {valid.get('questions', '?')} validation questions. Mean ± sample standard deviation "
                  "over seeds.", ""]
        machines = sorted({f"{r.get('device', '?')} ({r.get('machine', '?')})" for r in records})
        if len(machines) > 1:  # times and memory only compare within one machine and thread count
            lines += ["Runs ran on different devices or thread counts, so their times and memory do not compare "
                      "directly: " + "; ".join(machines) + ".", ""]
        else:
            lines += [f"Device: {machines[0]}.", ""]
    lines += _table(rows, metric) + [""]
    lines += _differences(rows, metric)
    if skipped:
        lines += ["## Records left out", ""] + [f"- {s}" for s in skipped] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def intrinsic_markdown(result: IntrinsicResult, *, metric: str, title: str, plot: str,
                       details: dict[str, Any] | None = None) -> str:
    """The page of an intrinsic-dimension measurement: the verdict, every scored d, the plot, the protocol."""
    label = f"d_int{round(100 * result.fraction)}"
    if result.d_int is None:
        verdict = f"No scored d reached {result.fraction:.0%} of the baseline."
    elif result.lower is None:
        verdict = f"**{label} <= {result.d_int}**: the smallest d scored already reached the threshold."
    else:
        verdict = f"**{label} = {result.d_int}** (d = {result.lower} missed the threshold)."
    lines = [
        f"# {title}",
        "",
        verdict,
        "",
        f"- baseline {metric}: {result.baseline:.4f}",
        f"- threshold ({result.fraction:.0%} of baseline): {result.threshold:.4f}",
        "",
        f"| d | {metric} | reaches threshold |",
        "|---:|---:|:---:|",
        *(f"| {d} | {s:.4f} | {'yes' if s >= result.threshold else 'no'} |" for d, s in result.points),
        "",
        f"![{metric} against d]({plot})",
    ]
    if details:
        lines += ["", "## Protocol", "", *(f"- {key}: {value}" for key, value in details.items())]
    return "\n".join(lines) + "\n"
