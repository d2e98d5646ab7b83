"""A folder's report: read every `*/run.json` under it and write `report.md`, `report.html` and the plots.

`sweep.json`, when present, gives the entries' labels and their order, and an `intrinsic.json`
beside the runs adds its measurement to the page. A report can be rebuilt at any time, from a
finished sweep or a half-finished one; an unreadable record is listed as such and left out.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from loralab.errors import LoralabError
from loralab.metrics import METRICS
from loralab.reports.html import PAGE, Progress, report_page
from loralab.reports.intrinsic import INTRINSIC, read_intrinsic
from loralab.reports.markdown import report_markdown
from loralab.reports.plots import (plot_loss_curves, plot_metric_vs_alpha, plot_metric_vs_cost, plot_metric_vs_params,
                                   plot_validation_curves)
from loralab.reports.rows import Row, Section, build_sections, load_records, read_manifest, short_paths
from loralab.runs.artifacts import RECORD, _atomic_write, read_json

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


def _gather(folder: Path, metric: str | None) -> tuple[list[tuple[str, dict[str, Any]]], list[str], list[Section], dict]:
    """The records under `folder`, the ones left out and why, the sections, and the sweep's manifest."""
    if metric is not None and metric not in METRICS:
        raise LoralabError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    records, skipped = load_records(folder)
    if not records:
        raise LoralabError(f"{folder}: no finished run records (*/run.json) to report on"
                           + (f"; left out: {'; '.join(skipped)}" if skipped else ""))
    sections = build_sections(records, read_manifest(folder), metric)
    reported = list(dict.fromkeys(m for s in sections for m in s.metrics))
    if metric is not None and reported and metric not in reported:
        raise LoralabError(f"unknown metric {metric!r} for these records: they report {', '.join(reported)}")
    return records, skipped, sections, _manifest_info(folder / "sweep.json")


def _manifest_info(path: Path) -> dict[str, str]:
    """The experiment's name and description from sweep.json, where it has them as text."""
    try:
        info = read_json(path) if path.is_file() else {}
    except LoralabError:
        return {}  # read_manifest has said why
    return {k: v for k, v in info.items() if k in ("experiment", "description") and isinstance(v, str)}


def _page(folder: Path, out: Path, records: list[tuple[str, dict[str, Any]]], skipped: list[str],
          sections: list[Section], title: str, description: str, files: list[Path], running: bool) -> Path:
    """Write report.html into `out`: links to each run's record relative to it, the sweep's progress, and the
    intrinsic-dimension record when one is beside the runs."""
    names = {id(record): name for name, record in records}

    def href(record: dict[str, Any]) -> str:
        return quote(Path(os.path.relpath(folder / names[id(record)] / RECORD, out)).as_posix())

    manifest = read_manifest(folder)
    progress = Progress(len(manifest), sum(name in manifest for name, _ in records), running) if manifest else None
    intrinsic, skipped = None, list(skipped)
    if (folder / INTRINSIC).is_file():
        try:
            intrinsic = read_intrinsic(folder / INTRINSIC)
        except LoralabError as e:
            skipped.append(str(e))
    text = report_page(sections, skipped, title, href=href, description=description, progress=progress,
                       intrinsic=intrinsic, files=[p.name for p in files])
    _atomic_write(out / PAGE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out / PAGE


def write_page(folder: str | Path, out: str | Path | None = None, *, metric: str | None = None,
               title: str | None = None, running: bool = False) -> Path:
    """Write only `report.html` (what a running sweep rewrites after each run, `running=True`)."""
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    records, skipped, sections, info = _gather(folder, metric)
    out.mkdir(parents=True, exist_ok=True)
    return _page(folder, out, records, skipped, sections, title or f"{info.get('experiment', folder.name)}: results",
                 info.get("description", ""), [], running)


def write_report(folder: str | Path, out: str | Path | None = None, *, metric: str | None = None,
                 title: str | None = None) -> Report:
    """Read the records under `folder`; write `report.md`, `report.html` and the plots into `out` (default: `folder`).

    Rows are ranked and plotted by `metric`; None means each data set's own headline metric (the
    records' `metric`, else MAP@3, the only one of records written before tasks named theirs).
    """
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    records, skipped, sections, info = _gather(folder, metric)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for section, tag in zip(sections, _tags(sections)):
        subtitle = section.name if tag else ""
        files += [p for p in (plot_metric_vs_alpha(section.rows, section.metric, out, tag=tag, subtitle=subtitle),
                              plot_metric_vs_params(section.rows, section.metric, out, tag=tag, subtitle=subtitle),
                              plot_metric_vs_cost(section.rows, section.metric, out, tag=tag, subtitle=subtitle),
                              plot_loss_curves(section.rows, out, tag=tag, subtitle=subtitle),
                              plot_validation_curves(section.rows, section.metric, out, tag=tag, subtitle=subtitle))
                  if p is not None]
    title = title or f"{info.get('experiment', folder.name)}: results"
    text = report_markdown(sections, skipped, title, info.get("description", ""), files)
    _atomic_write(out / TABLE, lambda tmp: Path(tmp).write_text(text))
    page = _page(folder, out, records, skipped, sections, title, info.get("description", ""),
                 [out / TABLE] + files, running=False)
    return Report([row for s in sections for row in s.rows], skipped, files + [out / TABLE, page], text, sections)
