"""What `compare.json` holds: each method's bracket and best setting, its final runs, their costs, the
ranking with noise verdicts, the budget as split and as spent, and the one-sentence answer.

The ranking is the reports' (`reports.rows`): a method's final runs are one row of seeds, ranked by their
mean, and each other row is within noise of the best when the difference of the means is under twice
its standard error (a single seed borrows the pooled seed-to-seed deviation). The report
(`report.py`) is built from this file alone.
"""

from __future__ import annotations

import os

import math
from pathlib import Path
from typing import Any

from loralab.metrics import METRICS
from loralab.recommendation.verdict import Verdict
from loralab.reports.rows import Row, against_best, higher_is_better
from loralab.runs.artifacts import RECORD, WEIGHTS, read_json
from loralab.runs.state import record_state


def _final(cmp: Any, method: Any, settings: dict[str, Any], seed: int) -> dict[str, Any] | None:
    """One final run's record, or None when it has not finished."""
    folder = cmp.out / cmp.final_folder(method, settings, seed)
    if not (folder / RECORD).exists() or record_state(folder, cmp.final_config(method, settings, seed))[0] != "done":
        return None
    return read_json(folder / RECORD)


def _cost(records: list[dict[str, Any]], folders: list[Path]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        values = [float(r[key]) for r in records if isinstance(r.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    stored = [(f / WEIGHTS).stat().st_size for f in folders if (f / WEIGHTS).exists()]
    return {"train_seconds": mean("train_seconds"), "peak_memory_mb": mean("peak_memory_mb"),
            "trainable_params": records[0].get("trainable_params") if records else None,
            "stored_bytes": max(stored) if stored else None}


def _method(cmp: Any, method: Any, verdict: Verdict | None) -> tuple[dict[str, Any], Row]:
    bracket, records = cmp.brackets[method.name], cmp.records(method.name)
    found = bracket.pilots(*records.ranking)
    pilots = [{"setting": p.number, "settings": p.settings, "values": {str(k): v for k, v in sorted(p.values.items())},
               **({"losses": {str(k): v for k, v in sorted(p.losses.items())}} if p.losses else {}),
               **({"seeds": seeds} if (seeds := {str(k): v for k in sorted(p.values)
                                                 if (v := records.seeds(p.number, k))}) else {}),
               "state": p.state, "folders": {str(k): bracket.folder(p.number, k) for k in sorted(p.values)}}
              for p in found]
    row = Row(method.name, method.name, method.fixed.get("strategy", ""), {})
    entry: dict[str, Any] = {"method": method.name, "lr_range": list(method.lr_range),
                             "choices": {k: list(v) for k, v in method.choices.items()},
                             "rung_steps": list(bracket.steps), "bracket_settings": len(bracket.settings),
                             "bracket_filled": bracket.least > 1,
                             "last_rung_seeds": bracket.seeds_at(bracket.steps[-1]), "pilots": pilots,
                             **({"trimmed": {str(bracket.steps[r]): n for r, n in bracket.caps}} if bracket.caps else {}),
                             **({"hedged": {str(k): i for k, i in hedged.items()}}
                                if (hedged := bracket.hedges(*records.ranking)) else {}),
                             "stopped": cmp.stopped.get(method.name), "best": None, "finals": []}
    if verdict is None:
        return entry, row
    folders = []
    for seed in cmp.seeds():
        record = _final(cmp, method, verdict.winner.settings, seed)
        folder = cmp.out / cmp.final_folder(method, verdict.winner.settings, seed)
        value = (record or {}).get("valid", {}).get(cmp.metric) if (record or {}).get("status") == "completed" else None
        trained_in = (record or {}).get("trained_in")
        entry["finals"].append({"seed": seed, "folder": folder.relative_to(cmp.out).as_posix(),
                                "status": (record or {}).get("status", "not run"), cmp.metric: value,
                                **({"trained_in": os.path.normpath(os.path.join(
                                    folder.relative_to(cmp.out).as_posix(), trained_in))} if trained_in else {})})
        if record is not None:
            row.records.append(record)
            folders.append(folder)
    entry["best"] = {"setting": verdict.winner.number, "settings": verdict.winner.settings,
                     "pilot_steps": verdict.steps, "pilot_value": verdict.winner.values[verdict.steps],
                     "rivals_within_noise": [p.number for p, _, _, within in verdict.rivals if within],
                     "rate_at_edge": rate_at_edge(found, verdict.winner.settings)}
    values = row.values(cmp.metric)
    entry.update({"mean": row.mean(cmp.metric), "sd": row.sd(cmp.metric), "n": len(values),
                  **_cost(row.completed, folders),
                  "cpus": sorted({str(r.get("cpu") or "not recorded") for r in row.completed})})
    return entry, row


def rate_at_edge(pilots: list[Any], settings: dict[str, Any]) -> str | None:
    """"lowest" or "highest" when the best setting's learning rate is the lowest or highest of at least three its
    bracket tried: the best inside the range searched, not shown to be the best rate (on GLUE, LoRA's range of
    3e-4 to 3e-3 gave three picks at 3e-3 and one at 3e-4); else None."""
    rates = {float(p.settings["lr"]) for p in pilots if "lr" in p.settings}
    lr = settings.get("lr")
    if len(rates) < 3 or lr is None:
        return None
    return "lowest" if float(lr) == min(rates) else "highest" if float(lr) == max(rates) else None


def _seeds_disagree(method: dict[str, Any], best: dict[str, Any], level: float = 0.95) -> bool:
    """Whether a method's seed-to-seed variance is larger than the best method's beyond chance (an F test
    at `level`): then its "within noise" says only that its seeds disagree, as on STS-B, where LoRA's seeds
    scored 0.819, 0.091 and 0.826 against full's 0.841, 0.831, 0.826, and is no reason to name it."""
    from scipy.stats import f

    n, m, sd, sd_best = method.get("n") or 0, best.get("n") or 0, method.get("sd"), best.get("sd")
    if n < 2 or m < 2 or sd is None or sd_best is None:
        return False
    if sd_best == 0:
        return sd > 0
    return (sd / sd_best) ** 2 > f.ppf(level, n - 1, m - 1)


def _sentence(methods: list[dict[str, Any]], metric: str, budget: dict[str, Any]) -> str:
    metric = METRICS[metric].label if metric in METRICS else metric
    within = f"within the {round(budget['budget_seconds'] / 60, 1):g}-minute budget"
    if budget["over_budget"]:  # said in the sentence, not only in the budget's table
        within += (f" (overspent: {budget['spent_seconds']:.0f} s, since each method's first pilot and final runs "
                   "always run)")
    ranked = [m for m in methods if m.get("rank")]
    if not ranked:
        return f"No method finished a final run {within}; give it a larger --budget or fewer --methods."
    best = ranked[0]
    close = [m for m in ranked[1:] if m.get("verdict") == "within noise"]
    unsettled = [m for m in close if _seeds_disagree(m, best)]
    close = [m for m in close if m not in unsettled]
    if len(ranked) == 1:
        return f"Only {best['method']} finished its final runs {within} ({metric} {best['mean']:.3f})."
    seconds = {m["method"]: m.get("train_seconds") or math.inf for m in [best] + close}
    cheap = min([best] + close, key=lambda m: (seconds[m["method"]], m["rank"]))
    if cheap is best:
        tail = (f"; {', '.join(m['method'] for m in close)} {'was' if len(close) == 1 else 'were'} within noise of it "
                "but no cheaper to train") if close else ", beyond noise of every other method"
        if unsettled and not close:
            tail = "; " + "; ".join(f"{m['method']} was within noise of it only because its seeds disagree (sd "
                                    f"{m['sd']:.3f} against {best['sd']:.3f})" for m in unsettled)
        unknown = "" if best.get("sd") is not None else " (one seed each: noise unknown)"
        return f"{best['method']} is worth it {within}: it scored best ({metric} {best['mean']:.3f}){tail}{unknown}."
    share = seconds[cheap["method"]] / seconds[best["method"]] if seconds[best["method"]] else math.nan
    return (f"{cheap['method']} is worth it {within}: within noise of the best, {best['method']} ({metric} "
            f"{best['mean']:.3f} against {cheap['mean']:.3f}), at {share:.0%} of its training time.")


def summarize(cmp: Any, verdicts: dict[str, Verdict | None], pending: tuple[str, ...] = ()) -> dict[str, Any]:
    """compare.json: everything the report says, from the live comparison and the run records. `pending`: the
    methods not yet done, while a comparison is under way (it writes compare.json after each method's final
    runs); the answer then says that it is so far."""
    methods, rows = [], []
    for method in cmp.config.methods:
        entry, row = _method(cmp, method, verdicts[method.name])
        methods.append(entry)
        rows.append(row)
    scored = [r for r in rows if r.mean(cmp.metric) is not None]
    sign = 1 if higher_is_better(cmp.metric) else -1
    order = sorted(scored, key=lambda r: -sign * r.mean(cmp.metric))
    rank = {r.key: i + 1 for i, r in enumerate(order)}
    found = against_best(rows, cmp.metric)
    judged = {c.row.key: c for c in found.others} if found else {}
    for entry in methods:
        name = entry["method"]
        entry["rank"] = rank.get(name)
        if name in judged:
            c = judged[name]
            entry.update({"difference": c.diff, "se": c.se, "verdict": c.verdict})
        elif found is not None and name == found.best.key:
            entry["verdict"] = "best"
    methods.sort(key=lambda m: (m["rank"] or math.inf, m["method"]))
    budget = cmp.budget.summary()
    return {"metric": cmp.metric, "train_examples": cmp.train_examples, "valid_examples": cmp.valid_examples,
            "pilot_valid": cmp.pilot_examples, "final_steps": cmp.budget.final_steps, "seeds": cmp.seeds(),
            "pooled_sd": found.pooled if found else None, "budget": budget, "methods": methods,
            **({"pending": list(pending)} if pending else {}),
            "answer": _so_far(pending, len(methods)) + _sentence(methods, cmp.metric, budget)}


def _so_far(pending: tuple[str, ...], methods: int) -> str:
    if not pending:
        return ""
    return (f"So far, with {methods - len(pending)} of {methods} methods done ({', '.join(pending)} still to "
            "search and train): ")
