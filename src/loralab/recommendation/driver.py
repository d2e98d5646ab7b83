"""`recommend`: run the search, train the winner, write `recommendation.json`, then the report.

The driver is the one place that holds the live search; what the search found leaves it as
`recommendation.json` (every pilot, the verdict, the final run, the seconds spent), and the report
(`report.py`) is built from that file and the run records alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from loralab.recommendation.config import RecommendConfig
from loralab.recommendation.folder import RECOMMENDATION, final_folder, pilot_folder
from loralab.recommendation.halving import rung_steps
from loralab.recommendation.report import write_report
from loralab.recommendation.ledger import Clock, real_clock
from loralab.recommendation.search import Runner, Search, open_search, pilots, run_brackets, train_final
from loralab.recommendation.verdict import Pilot, Verdict, choose
from loralab.runs.artifacts import write_json


def recommend(config: RecommendConfig, out: str | Path, *, log: Callable[[str], None] = print,
              progress: bool = False, final: bool = True, runner: Runner | None = None,
              now: Clock = real_clock) -> dict[str, Any]:
    """Search, train the winner on all the data, and write `recommendation.json` and the report; returns
    the recommendation. `runner` and `now` stand in for training and the clock in tests."""
    search = open_search(config, out, log=log, progress=progress, runner=runner, now=now)
    try:
        return _search_and_train(search, final)
    finally:
        search.close()


def _search_and_train(search: Search, final: bool) -> dict[str, Any]:
    run_brackets(search)
    found = pilots(search)
    examples = min(search.config.pilot_valid, search.valid_examples)
    verdict = choose(found, search.metric, examples, lambda p: search.expected_cost(p.candidate))
    final_record = None
    if final and verdict is not None and search.config.worker == "main":
        final_record = train_final(search, verdict.winner)
    search.ledger.settle()
    summary = recommendation(search, found, verdict, final_record)
    write_json(search.out / RECOMMENDATION, summary)
    write_report(search.out)
    return summary


def _pilot_dict(search: Search, pilot: Pilot) -> dict[str, Any]:
    cost = None if pilot.step_seconds is None else pilot.step_seconds * search.final_steps()
    method = next((c.family for c in search.config.candidates if c.name == pilot.candidate), pilot.strategy)
    return {"trial": pilot.number, "candidate": pilot.candidate, "strategy": pilot.strategy, "method": method,
            "settings": pilot.settings,
            "values": {str(k): v for k, v in sorted(pilot.values.items())}, "state": pilot.state,
            "median_step_seconds": pilot.step_seconds, "expected_train_seconds": cost,
            "expected_budget_seconds": search.expected_cost(pilot.candidate),
            "folders": {str(k): search.ledger.key(pilot_folder(search.out, pilot.number, pilot.candidate, k))
                        for k in sorted(pilot.values)}}


def _final_dict(search: Search, winner: Pilot, record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    key = search.ledger.key(final_folder(search.out, winner.number, winner.candidate))
    return {"folder": key, "status": record.get("status"), search.metric: record.get("valid", {}).get(search.metric),
            "valid": record.get("valid"), "steps": record.get("steps"), "pilot_steps": max(winner.values, default=0),
            "train_seconds": record.get("train_seconds"),
            "peak_memory_mb": record.get("peak_memory_mb"), "trainable_params": record.get("trainable_params"),
            "seconds": search.ledger.entries.get(key, {}).get("seconds"),
            "cpu_seconds": search.ledger.entries.get(key, {}).get("cpu_seconds")}


def _lora_end(found: list[Pilot]) -> list[float]:
    """The learning rates of the LoRA settings that went furthest: those at the largest step any LoRA pilot reached."""
    lora = [p for p in found if p.strategy == "lora" and p.values]
    if not lora:
        return []
    top = max(max(p.values) for p in lora)
    return sorted(p.settings["lr"] for p in lora if top in p.values)


def _families(search: Search, found: list[Pilot]) -> list[dict[str, Any]]:
    """Per candidate: the shares of the budget it was given, what its pilots spent, its best pilot."""
    out = []
    for c in search.kept:
        mine = [p for p in found if p.candidate == c.name]
        spent = sum(search.ledger.cost(e) for e in search.ledger.entries.values()
                    if e.get("candidate") == c.name and e["kind"] == "pilot")
        reached = max((s for p in mine for s in p.values), default=None)
        out.append({"candidate": c.name, "shares": search.shares.get(c.name, []), "spent": round(spent, 1),
                    "pilots": sum(len(p.values) for p in mine), "settings": len(mine), "top_steps": reached})
    return out


def budget_line(summary: dict[str, Any]) -> str:
    """What the budget went to, in one line; why it stopped early when under 90% of it was used."""
    spent, budget = summary["spent_seconds"]["total"], summary["budget_seconds"]
    line = f"budget: spent {spent:.0f} s of {budget:.0f} s ({spent / budget:.0%})"
    if spent < 0.9 * budget:
        line += f"; stopped early: {summary['stopped']}"
        final, reserve = summary.get("final"), (summary.get("split") or {}).get("final_reserve")
        if final and final.get("seconds") is not None and reserve and final["seconds"] < 0.5 * reserve:
            line += f"; the final run took {final['seconds']:.0f} s of the {reserve:.0f} s kept for it"
    return line


def recommendation(search: Search, found: list[Pilot], verdict: Verdict | None,
                   final_record: dict[str, Any] | None) -> dict[str, Any]:
    """What `recommendation.json` holds: everything the report needs, so it never sees the live search."""
    config = search.config
    summary: dict[str, Any] = {
        "metric": search.metric,
        "budget_seconds": config.budget_seconds,
        "budget_clock": config.clock,
        "spent_seconds": {kind: round(search.ledger.spent(kind), 1) for kind in ("probe", "pilot", "final", "search")}
                         | {"total": round(search.ledger.spent(), 1)},
        "stopped": search.stopped,
        "used": round(search.ledger.spent() / config.budget_seconds, 3),
        "split": search.split,
        "families": _families(search, found),
        "train_examples": search.train_examples,
        "valid_examples": search.valid_examples,
        "pilot_valid": min(config.pilot_valid, search.valid_examples),
        "final_steps": search.final_steps(),
        "eta": config.eta,
        "rung_steps": list(rung_steps(config.min_steps, config.eta, config.rungs)),
        "memory_limit_mb": config.memory_mb,
        "candidates": [{**search.fits[c.name].to_dict(), "model": c.model, "strategy": c.strategy.value,
                        "lr_range": list(c.lr_range)} for c in config.candidates],
        "pilots": [_pilot_dict(search, p) for p in found],
        "lora_final_lrs": _lora_end(found),
    }
    if verdict is not None:
        summary["winner"] = {**_pilot_dict(search, verdict.winner), "compared_at_steps": verdict.steps}
        summary["comparisons"] = {str(steps): [{"trial": p.number, "candidate": p.candidate, "difference": diff,
                                                "noise": threshold, "within_noise": within}
                                               for p, diff, threshold, within in rows]
                                  for steps, rows in verdict.comparisons.items()}
        summary["cheaper_within_noise"] = _pilot_dict(search, verdict.cheaper) if verdict.cheaper else None
    summary["final"] = _final_dict(search, verdict.winner, final_record) if verdict else None
    return summary
