"""Reports built from run records alone: a Markdown table and PNG plots.

`write_report(folder)` reads every `*/run.json` under a sweep's folder (and `sweep.json`, when
present, for the entries' labels and their order), so a report can be rebuilt at any time, from a
finished sweep or a half-finished one, and a crashed run cannot corrupt it: an unreadable record is
listed as such and left out of the numbers. Records of several data sets (task, training file,
validation file) make one section each, with its own table, best row, noise verdicts and plots.

- `rows`: records grouped into sections and rows of seeds; means, standard deviations, noise verdicts.
- `markdown`: the text of `report.md` (and of an intrinsic-dimension measurement).
- `plots`: the PNG files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from loralab.runs.artifacts import _atomic_write, read_json
from loralab.errors import LoralabError
from loralab.metrics import METRICS
from loralab.reports.markdown import intrinsic_markdown, report_markdown
from loralab.reports.plots import (best_per_budget, budget_front, plot_intrinsic, plot_loss_curves,
                                   plot_metric_vs_alpha, plot_metric_vs_params)
from loralab.reports.rows import (Comparison, Row, Section, Verdicts, against_best, build_rows, build_sections,
                                  compare, load_records, read_manifest, short_paths)

__all__ = ["Comparison", "Report", "Row", "Section", "TABLE", "Verdicts", "against_best", "best_per_budget",
           "budget_front", "build_rows", "build_sections", "compare", "intrinsic_markdown", "load_records",
           "plot_intrinsic", "plot_loss_curves", "plot_metric_vs_alpha", "plot_metric_vs_params", "read_manifest",
           "report_markdown", "write_report"]

TABLE = "report.md"


@dataclass
class Report:
    """Rows (of every section, in order), the runs that could not be used, and the files written."""

    rows: list[Row]
    skipped: list[str]
    files: list[Path] = field(default_factory=list)
    markdown: str = ""
    sections: list[Section] = field(default_factory=list)


def _tags(sections: list[Section]) -> list[str]:
    """Distinct file-name tags for the sections' plots; none when there is only one section."""
    if len(sections) == 1:
        return [""]
    trains = short_paths([s.train for s in sections])
    tags: list[str] = []
    for s in sections:
        base = tag = re.sub(r"[^a-z0-9]+", "-", f"{s.task} {Path(trains[s.train]).with_suffix('')}".lower()).strip("-")
        n = 2
        while tag in tags:  # one training file validated on two files: two sections, one name
            tag, n = f"{base}-{n}", n + 1
        tags.append(tag)
    return tags


def write_report(folder: str | Path, out: str | Path | None = None, *, metric: str | None = None,
                 title: str | None = None) -> Report:
    """Read the records under `folder`; write `report.md` and the plots into `out` (default: `folder`).

    Rows are ranked and plotted by `metric`; None means each data set's own headline metric (the
    records' `metric`, else MAP@3, the only one of records written before tasks named theirs).
    """
    if metric is not None and metric not in METRICS:
        raise LoralabError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    records, skipped = load_records(folder)
    if not records:
        raise LoralabError(f"{folder}: no finished run records (*/run.json) to report on"
                           + (f"; left out: {'; '.join(skipped)}" if skipped else ""))
    sections = build_sections(records, read_manifest(folder), metric)
    reported = list(dict.fromkeys(m for s in sections for m in s.metrics))
    if metric is not None and reported and metric not in reported:
        raise LoralabError(f"unknown metric {metric!r} for these records: they report {', '.join(reported)}")
    manifest_path = folder / "sweep.json"
    info = read_json(manifest_path) if manifest_path.is_file() else {}
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for section, tag in zip(sections, _tags(sections)):
        subtitle = section.name if tag else ""
        files += [p for p in (plot_metric_vs_alpha(section.rows, section.metric, out, tag=tag, subtitle=subtitle),
                              plot_metric_vs_params(section.rows, section.metric, out, tag=tag, subtitle=subtitle),
                              plot_loss_curves(section.rows, out, tag=tag, subtitle=subtitle)) if p is not None]
    text = report_markdown(sections, skipped, title or f"{info.get('experiment', folder.name)}: results",
                           info.get("description", ""), files)
    _atomic_write(out / TABLE, lambda tmp: Path(tmp).write_text(text))
    return Report([row for s in sections for row in s.rows], skipped, files + [out / TABLE], text, sections)
