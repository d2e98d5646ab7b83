"""Reports built from run records alone: a Markdown table and PNG plots.

`write_report(folder)` reads every `*/run.json` under a sweep's folder (and `sweep.json`, when
present, for the entries' labels and their order), so a report can be rebuilt at any time, from a
finished sweep or a half-finished one, and a crashed run cannot corrupt it: an unreadable record is
listed as such and left out of the numbers.

- `rows`: records grouped into rows of seeds, means, standard deviations, noise verdicts.
- `markdown`: the text of `report.md` (and of an intrinsic-dimension measurement).
- `plots`: the PNG files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loralab.artifacts import _atomic_write, read_json
from loralab.errors import LoralabError
from loralab.reports.markdown import intrinsic_markdown, report_markdown
from loralab.reports.plots import (best_per_budget, plot_intrinsic, plot_loss_curves, plot_metric_vs_alpha,
                                   plot_metric_vs_params)
from loralab.reports.rows import Row, build_rows, compare, load_records, read_manifest

__all__ = ["Report", "Row", "TABLE", "best_per_budget", "build_rows", "compare", "intrinsic_markdown",
           "load_records", "plot_intrinsic", "plot_loss_curves", "plot_metric_vs_alpha", "plot_metric_vs_params",
           "read_manifest", "report_markdown", "write_report"]

METRICS = ("map@3", "accuracy")
TABLE = "report.md"


@dataclass
class Report:
    """Rows, the runs that could not be used, and the files written."""

    rows: list[Row]
    skipped: list[str]
    files: list[Path] = field(default_factory=list)
    markdown: str = ""


def write_report(folder: str | Path, out: str | Path | None = None, *, metric: str = "map@3",
                 title: str | None = None) -> Report:
    """Read the records under `folder`; write `report.md` and the plots into `out` (default: `folder`)."""
    if metric not in METRICS:
        raise LoralabError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    records, skipped = load_records(folder)
    if not records:
        raise LoralabError(f"{folder}: no finished run records (*/run.json) to report on"
                           + (f"; left out: {'; '.join(skipped)}" if skipped else ""))
    manifest_path = folder / "sweep.json"
    info = read_json(manifest_path) if manifest_path.is_file() else {}
    rows = build_rows(records, read_manifest(folder))
    out.mkdir(parents=True, exist_ok=True)
    files = [p for p in (plot_metric_vs_alpha(rows, metric, out), plot_metric_vs_params(rows, metric, out),
                         plot_loss_curves(rows, out)) if p is not None]
    text = report_markdown(rows, skipped, metric, title or f"{info.get('experiment', folder.name)}: results",
                           info.get("description", ""), files)
    _atomic_write(out / TABLE, lambda tmp: Path(tmp).write_text(text))
    return Report(rows, skipped, files + [out / TABLE], text)
