"""Rows of a report and their statistics, from run records alone.

Runs that differ only in their seed form one row, shown as mean ± sample standard deviation. Two
rows differ "beyond noise" when their means are further apart than twice the standard error of the
difference, sqrt(s1^2/n1 + s2^2/n2) (a rough two-sided 95% rule); a row with a single seed borrows
the pooled seed-to-seed deviation of the repeated rows. This measures training noise on a fixed
validation set; the validation set's own sampling error is reported beside it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.artifacts import RECORD, read_json
from loralab.errors import LoralabError

STRATEGY_ORDER = ("full", "attention", "qv", "lora", "subspace")
# Settings that say where a run ran or what it read, not how it trained; never a row's "settings".
IGNORED = ("device", "offline", "trust_remote_code", "training.seed", "training.eval_batch_size",
           "training.divergence_factor", "training.divergence_window")


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
        return [r["valid"][metric] for r in self.completed]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values) if values else None

    def sd(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.stdev(values) if len(values) >= 2 else None


def is_number(value: Any) -> bool:
    """A number, or one of the strings strict JSON records non-finite numbers as."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("NaN", "Infinity", "-Infinity")


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
            record = read_json(path)
        except LoralabError as e:
            skipped.append(f"{name}: {e}")
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
        data = read_json(path)
    except LoralabError:
        return {}
    return {run["folder"]: (i, " / ".join(run.get("labels", []))) for i, run in enumerate(data.get("runs", []))}


def build_rows(records: list[tuple[str, dict[str, Any]]], manifest: dict[str, tuple[int, str]] | None = None) -> list[Row]:
    """Group records into rows; a row's settings are the ones that vary across the whole report."""
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


_SETTING_NAMES = {"strategy.lora.r": "r", "strategy.lora.alpha": "alpha", "strategy.lora.dropout": "dropout",
                  "strategy.train_head": "head", "training.lr": "lr", "strategy.subspace.dim": "d",
                  "strategy.subspace.projection": "projection", "strategy.subspace.seed": "P seed"}


def settings_text(row: Row) -> str:
    """The row's varying settings in a few words ("alpha 32, head trained, lr 1e-05")."""
    parts = []
    for key, value in row.settings.items():
        if key.startswith("strategy.lora.") and row.strategy != "lora":
            continue
        if key.startswith("strategy.subspace.") and row.strategy != "subspace":
            continue
        name = _SETTING_NAMES.get(key, key.rsplit(".", 1)[-1])
        if key == "strategy.train_head":
            value = "trained" if value else "frozen"
        elif isinstance(value, float):
            value = f"{value:g}"
        elif isinstance(value, list):
            value = "+".join(map(str, value))
        elif isinstance(value, str) and "/" in value:
            value = Path(value).name
        parts.append(f"{name} {value}")
    return ", ".join(parts)


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
