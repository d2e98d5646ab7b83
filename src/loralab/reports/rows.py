"""Rows of a report and their statistics, from run records alone.

Runs that differ only in their seed form one row, shown as mean ± sample standard deviation. Two
rows differ "beyond noise" when their means are further apart than twice the standard error of the
difference, sqrt(s1^2/n1 + s2^2/n2) (a rough two-sided 95% rule); a row with a single seed borrows
the pooled seed-to-seed deviation of the repeated rows. This measures training noise on a fixed
validation set; the validation set's own sampling error is reported beside it.

Rows are only compared within a section: the runs of one data set (task, training file, validation
file), since MAP@3 on one task says nothing against accuracy, or even MAP@3, on another.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.runs.artifacts import RECORD
from loralab.runs.record import is_number, read_manifest_runs, read_record
from loralab.errors import LoralabError
from loralab.metrics import METRICS
from loralab.settings import SETTINGS

STRATEGY_ORDER = ("full", "attention", "qv", "lora", "subspace")
# Settings that say where a run ran, its seed, or its guards, not how it trained: never a row's "settings".
IGNORED = tuple(s.path for s in SETTINGS if not s.in_reports)
# Records written before tasks named their headline metric are all multiple choice, ranked by MAP@3.
DEFAULT_TASK, DEFAULT_METRIC = "multiple-choice", "map@3"


@dataclass
class Row:
    """Runs that differ only in their seed."""

    key: str
    label: str
    strategy: str
    settings: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    order: int = 10**9

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") == "completed" and "valid" in r]

    @property
    def diverged(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") == "diverged"]

    def values(self, metric: str) -> list[float]:
        """The metric of each completed run that reports it as a finite number."""
        return [v for v in (metric_value(r, metric) for r in self.completed) if v is not None]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values) if values else None

    def sd(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.stdev(values) if len(values) >= 2 else None


@dataclass
class Section:
    """The rows of one data set, ranked by one metric."""

    task: str
    train: str
    valid: str
    rows: list[Row]
    metric: str
    """The metric the rows are ranked and plotted by."""
    metrics: list[str]
    """The metrics its records report, in the order of `loralab.metrics.METRICS`."""
    name: str = ""
    """The task and the files, by as much of their paths as tells this section from the others."""

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for row in self.rows for r in row.records]


def metric_value(record: dict[str, Any], metric: str) -> float | None:
    """The record's validation `metric` as a float; None when it has none, or a NaN or infinite one."""
    value = record.get("valid", {}).get(metric)
    return float(value) if is_number(value) and math.isfinite(float(value)) else None


def higher_is_better(metric: str) -> bool:
    return METRICS[metric].higher_is_better if metric in METRICS else True


def metric_label(metric: str) -> str:
    """How tables and plots name a metric ("MAP@3")."""
    return METRICS[metric].label if metric in METRICS else metric


def _key(hyperparameters: dict[str, Any]) -> str:
    return repr(sorted((k, v) for k, v in hyperparameters.items() if k not in IGNORED))


def load_records(folder: str | Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(run folder name, record) for every readable record under `folder`, and why others were skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoralabError(f"{folder}: no such folder")
    records, skipped = [], []
    for path in sorted(folder.glob(f"**/{RECORD}")):
        name = str(path.parent.relative_to(folder))
        try:
            record = read_record(path)
        except LoralabError as e:
            skipped.append(f"{name}: {e}")
            warnings.warn(f"left out of the report: {e}", stacklevel=2)
            continue
        if record.get("status") not in ("completed", "diverged") or not isinstance(record.get("hyperparameters"), dict):
            skipped.append(f"{name}: status {record.get('status')!r} (unfinished)")
            continue
        records.append((name, record))
    return records, skipped


def read_manifest(folder: Path) -> dict[str, tuple[int, str]]:
    """folder -> (position, label) from sweep.json, when the sweep left one."""
    path = folder / "sweep.json"
    if not path.is_file():
        return {}
    try:
        runs = read_manifest_runs(path)
    except LoralabError as e:  # the runs' own records still make a report, in folder order
        warnings.warn(f"sweep order and labels not used: {e}", stacklevel=2)
        return {}
    return {folder: (i, " / ".join(labels)) for i, (folder, labels) in enumerate(runs)}


def build_rows(records: list[tuple[str, dict[str, Any]]], manifest: dict[str, tuple[int, str]] | None = None) -> list[Row]:
    """Group records into rows; a row's settings are the ones that vary across all the records given."""
    manifest = manifest or {}
    flats = [r["hyperparameters"] for _, r in records]
    varying = [k for k in (flats[0] if flats else {})
               if k not in IGNORED and k != "strategy.strategy" and len({repr(f.get(k)) for f in flats}) > 1]
    rows: dict[str, Row] = {}
    for (name, record), flat in zip(records, flats):
        key = _key(flat)
        position, label = manifest.get(name, (10**9, ""))
        row = rows.get(key)
        if row is None:
            settings = {k: flat.get(k) for k in varying}
            row = rows[key] = Row(key, label or record.get("strategy", "?"), record.get("strategy", "?"), settings)
        row.records.append(record)
        row.order = min(row.order, position)
    strategy_rank = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    return sorted(rows.values(), key=lambda r: (r.order, strategy_rank.get(r.strategy, 99),
                                                r.records[0].get("trainable_params", 0)))


def data_set(record: dict[str, Any]) -> tuple[str, str, str]:
    """(task, training file, validation file): the records that share these measure the same thing."""
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    flat = record["hyperparameters"]
    train, valid = config.get("train", flat.get("train")), config.get("valid", flat.get("valid"))
    return str(record.get("task") or DEFAULT_TASK), str(train or ""), str(valid or "")


def reported_metrics(rows: list[Row]) -> list[str]:
    """The metrics of `loralab.metrics.METRICS` that some completed run of `rows` reports, in that order."""
    present = {key for row in rows for r in row.completed for key in r["valid"]}
    return [m for m in METRICS if m in present]


def short_paths(paths: list[str]) -> dict[str, str]:
    """Each path by as few of its last parts as tell it from the others ("sst2/train.tsv", not "train.tsv")."""
    parts = {p: Path(p).parts for p in set(paths)}
    out = {}
    for path, mine in parts.items():
        n = 1
        while n < len(mine) and any(other[-n:] == mine[-n:] for p, other in parts.items() if p != path):
            n += 1
        out[path] = str(Path(*mine[-n:])) if mine else path
    return out


def build_sections(records: list[tuple[str, dict[str, Any]]], manifest: dict[str, tuple[int, str]] | None = None,
                   metric: str | None = None) -> list[Section]:
    """One section of rows per data set, in sweep order; each ranked by `metric` where its records report
    it, else by their own headline metric (the record's `metric`, else MAP@3)."""
    groups: dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]] = {}
    for name, record in records:
        groups.setdefault(data_set(record), []).append((name, record))
    sections = []
    for (task, train, valid), members in groups.items():
        rows = build_rows(members, manifest)
        metrics = reported_metrics(rows)
        own = members[0][1].get("metric", DEFAULT_METRIC)
        chosen = next((m for m in (metric, own) if m in metrics), metrics[0] if metrics else own)
        sections.append(Section(task, train, valid, rows, chosen, metrics))
    trains, valids = short_paths([s.train for s in sections]), short_paths([s.valid for s in sections])
    for s in sections:
        s.name = f"{s.task}: {trains[s.train]}" + (f", validated on {valids[s.valid]}" if s.valid else "")
    return sorted(sections, key=lambda s: min(r.order for r in s.rows))


def setting_name(key: str) -> str:
    """How a report names a setting ("alpha" for strategy.lora.alpha)."""
    setting = SETTINGS.by_path.get(key)
    return setting.report_label if setting else key.rsplit(".", 1)[-1]


def setting_value(key: str, value: Any) -> str:
    """A setting's value in a few characters ("frozen", "1e-05", "query+value", "train.csv")."""
    if key == "strategy.train_head":
        return "trained" if value else "frozen"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "+".join(map(str, value))
    if isinstance(value, str) and "/" in value:
        return Path(value).name
    return str(value)


def applies(key: str, strategy: str) -> bool:
    """Whether a setting means anything to a strategy (a full run's lora.alpha is only a default)."""
    return not ((key.startswith("strategy.lora.") and strategy != "lora")
                or (key.startswith("strategy.subspace.") and strategy != "subspace"))


def settings_text(row: Row) -> str:
    """The row's varying settings in a few words ("alpha 32, head trained, lr 1e-05")."""
    return ", ".join(f"{setting_name(key)} {setting_value(key, value)}" for key, value in row.settings.items()
                     if applies(key, row.strategy))


def pooled_sd(rows: list[Row], metric: str) -> float | None:
    """The seed-to-seed standard deviation pooled over every row with repeats."""
    num = den = 0.0
    for row in rows:
        values = row.values(metric)
        if len(values) >= 2:
            num += statistics.variance(values) * (len(values) - 1)
            den += len(values) - 1
    return math.sqrt(num / den) if den else None


def compare(a: Row, b: Row, metric: str, pooled: float | None) -> tuple[float, float | None]:
    """(mean of a minus mean of b, standard error of that difference or None when unknown)."""
    diff = a.mean(metric) - b.mean(metric)
    terms = []
    for row in (a, b):
        sd = row.sd(metric) if row.sd(metric) is not None else pooled
        if sd is None:
            return diff, None
        terms.append(sd**2 / len(row.values(metric)))
    return diff, math.sqrt(sum(terms))


@dataclass
class Comparison:
    """One row against the best row: the difference of their means and its standard error."""

    row: Row
    diff: float
    se: float | None
    """None when no row has repeated seeds, so training noise is unknown."""

    @property
    def verdict(self) -> str:
        if self.se is None:
            return "noise unknown (single seed)"
        return "within noise" if abs(self.diff) < 2 * self.se else "worse beyond noise"


@dataclass
class Verdicts:
    """The best row by one metric, the pooled seed-to-seed deviation, and every other scored row against it."""

    best: Row
    pooled: float | None
    others: list[Comparison]


def against_best(rows: list[Row], metric: str) -> Verdicts | None:
    """Every scored row against the best one (the lowest mean where lower is better); None under two scored rows."""
    scored = [r for r in rows if r.mean(metric) is not None]
    if len(scored) < 2:
        return None
    pick = max if higher_is_better(metric) else min
    best = pick(scored, key=lambda r: r.mean(metric))
    pooled = pooled_sd(rows, metric)
    return Verdicts(best, pooled, [Comparison(row, *compare(row, best, metric, pooled))
                                   for row in scored if row is not best])
