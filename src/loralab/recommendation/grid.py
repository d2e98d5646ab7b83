"""`recommend --grid`: train every setting of a finite search space on all the data, one seed each.

A search is worth its budget when its pick is as good as the best setting of the space it searched,
at a fraction of the cost of trying them all. The grid is that reference: the same candidates, the
same space (made finite with `--lr-points`), each setting trained as the search's final run would be
(all the training data, scored on all the validation data), its cost counted on the same clock in the
same ledger. `grid.json` lists every row with its score and cost, best first, and `grid.md` shows it.
A rerun with the same options goes on where it stopped (finished runs are read back).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from loralab.recommendation.config import RecommendConfig
from loralab.recommendation.ledger import Clock, real_clock
from loralab.recommendation.search import Runner, open_search, screen, timed
from loralab.recommendation.space import Candidate, describe
from loralab.reports.rows import higher_is_better
from loralab.runs.artifacts import _atomic_write, write_json

GRID = "grid.json"
GRID_REPORT = "grid.md"


def grid_folder(out: Path, candidate: Candidate, settings: dict[str, Any]) -> Path:
    """out/grid/<candidate>/lr-0.001_r-8_alpha-16_qv: one folder per setting."""
    names = {"lora_r": "r-", "lora_alpha": "alpha-", "lora_targets": ""}
    parts = [names.get(key, f"{key}-") + (f"{value:g}" if isinstance(value, float) else str(value))
             for key, value in settings.items()]
    return out / "grid" / candidate.name / "_".join(parts)


def _score(record: dict[str, Any], metric: str) -> float | None:
    value = record.get("valid", {}).get(metric) if record.get("status") == "completed" else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def run_grid(config: RecommendConfig, out: str | Path, *, log: Callable[[str], None] = print,
             progress: bool = False, runner: Runner | None = None, now: Clock = real_clock) -> dict[str, Any]:
    """Train every setting of every candidate that fits, write `grid.json` and `grid.md`; returns what
    grid.json holds. `runner` and `now` stand in for training and the clock in tests."""
    plans = {c.name: c.grid() for c in config.candidates}  # a continuous space is refused before anything runs
    search = open_search(config, out, log=log, progress=progress, runner=runner, now=now)
    try:
        screen(search)
        total = sum(len(plans[c.name]) for c in search.kept)
        rows, done = [], 0
        for candidate in search.kept:
            for settings in plans[candidate.name]:
                folder = grid_folder(search.out, candidate, settings)
                record = timed(search, candidate.config(config.base, settings), folder, "grid", candidate.name)
                done += 1
                entry = search.ledger.entries.get(search.ledger.key(folder), {})
                score = _score(record, search.metric)
                rows.append({"candidate": candidate.name, "method": candidate.family, "settings": settings,
                             "folder": search.ledger.key(folder), search.metric: score, "status": record.get("status"),
                             "steps": record.get("steps"), "seconds": entry.get("seconds"),
                             "cpu_seconds": entry.get("cpu_seconds")})
                log(f"[{done}/{total}] {candidate.name} ({describe(settings)}): {search.metric} "
                    f"{'failed' if score is None else f'{score:.4f}'}")
        search.ledger.settle()
        summary = _summary(search, rows)
        write_json(search.out / GRID, summary)
        text = markdown(summary)
        _atomic_write(search.out / GRID_REPORT, lambda tmp: Path(tmp).write_text(text))
        return summary
    finally:
        search.close()


def _summary(search: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    metric, sign = search.metric, (1 if higher_is_better(search.metric) else -1)
    scored = sorted((r for r in rows if r[metric] is not None), key=lambda r: -sign * r[metric])
    return {"metric": metric, "budget_clock": search.config.clock,
            "spent_seconds": {kind: round(search.ledger.spent(kind), 1) for kind in ("probe", "grid")}
                             | {"total": round(search.ledger.spent(), 1)},
            "excluded": {c.name: search.fits[c.name].excluded for c in search.config.candidates
                         if search.fits[c.name].excluded},
            "train_examples": search.train_examples, "valid_examples": search.valid_examples,
            "best": scored[0] if scored else None,
            "rows": scored + [r for r in rows if r[metric] is None]}


def markdown(summary: dict[str, Any]) -> str:
    """grid.md: every setting, best first, with its score and cost."""
    metric, spent = summary["metric"], summary["spent_seconds"]
    lines = ["# Grid: every setting of the space, trained on all the data", "",
             f"{len(summary['rows'])} settings, {summary['train_examples']} training and "
             f"{summary['valid_examples']} validation examples, one seed each; {spent['grid']:.0f} s "
             f"({summary['budget_clock']} clock) of training and scoring, {spent['probe']:.0f} s of memory probes.", "",
             f"| rank | candidate | settings | {metric} | steps | {summary['budget_clock']} seconds |",
             "|---|---|---|---|---|---|"]
    for i, row in enumerate(summary["rows"], 1):
        value = "failed" if row[metric] is None else f"{row[metric]:.4f}"
        cost = row["cpu_seconds"] if summary["budget_clock"] == "cpu" else row["seconds"]
        lines.append(f"| {i} | {row['candidate']} | {describe(row['settings'])} | {value} | {row['steps']} | "
                     f"{'' if cost is None else f'{cost:.0f}'} |")
    for name, why in summary["excluded"].items():
        lines.append(f"\n{name} was not trained: {why}.")
    return "\n".join(lines) + "\n"
