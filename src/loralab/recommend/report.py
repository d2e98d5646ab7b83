"""A recommendation's record and report: `recommendation.json`, `report.md` and `curves.png`.

Built from the study, the ledger and the run records only, so rebuilding it changes nothing. The
noise rule: a rival is *within noise* of the winner when their difference is under twice the
standard error of a difference of two scores on the pilots' validation examples (`search.sampling_se`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from loralab.recommend.space import describe
from loralab.reports.rows import metric_label
from loralab.runs.artifacts import _atomic_write, write_json


_CLOCKS = {"wall": "wall-clock seconds", "cpu": "CPU seconds of the search's process"}


def _cost(search, pilot) -> float | None:
    return None if pilot.step_seconds is None else pilot.step_seconds * search.final_steps()


def _budget_cost(search, pilot) -> float | None:
    from loralab.recommend.search import expected_cost

    return expected_cost(search, pilot)


def _pilot_dict(search, pilot) -> dict[str, Any]:
    return {"trial": pilot.number, "candidate": pilot.candidate, "strategy": pilot.strategy, "settings": pilot.settings,
            "values": {str(k): v for k, v in sorted(pilot.values.items())}, "state": pilot.state,
            "median_step_seconds": pilot.step_seconds, "expected_train_seconds": _cost(search, pilot),
            "expected_budget_seconds": _budget_cost(search, pilot)}


def _final_dict(search, winner, record: dict[str, Any] | None) -> dict[str, Any] | None:
    from loralab.recommend.search import final_folder

    if record is None:
        return None
    key = search.ledger.key(final_folder(search.out, winner))
    return {"folder": key, "status": record.get("status"), search.metric: record.get("valid", {}).get(search.metric),
            "valid": record.get("valid"), "steps": record.get("steps"), "train_seconds": record.get("train_seconds"),
            "peak_memory_mb": record.get("peak_memory_mb"), "trainable_params": record.get("trainable_params"),
            "seconds": search.ledger.entries.get(key, {}).get("seconds"),
            "cpu_seconds": search.ledger.entries.get(key, {}).get("cpu_seconds")}


def _lora_end(found, verdict) -> list[float]:
    """The learning rates of the LoRA settings that went furthest: those at the largest step any LoRA pilot reached."""
    lora = [p for p in found if p.strategy == "lora" and p.values]
    if not lora:
        return []
    top = max(max(p.values) for p in lora)
    return sorted(p.settings["lr"] for p in lora if top in p.values)


def write_recommendation(search, found, verdict, final_record) -> dict[str, Any]:
    config = search.config
    summary: dict[str, Any] = {
        "metric": search.metric,
        "budget_seconds": config.budget_seconds,
        "budget_clock": config.clock,
        "spent_seconds": {kind: round(search.ledger.spent(kind), 1) for kind in ("probe", "pilot", "final", "search")}
                         | {"total": round(search.ledger.spent(), 1)},
        "stopped": search.stopped,
        "train_examples": search.train_examples,
        "valid_examples": search.valid_examples,
        "pilot_valid": min(config.pilot_valid, search.valid_examples),
        "final_steps": search.final_steps(),
        "memory_limit_mb": config.memory_mb,
        "candidates": [{**search.fits[c.name].to_dict(), "model": c.model, "strategy": c.strategy.value,
                        "lr_range": list(c.lr_range)} for c in config.candidates],
        "pilots": [_pilot_dict(search, p) for p in found],
        "lora_final_lrs": _lora_end(found, verdict),
    }
    if verdict is not None:
        summary["winner"] = {**_pilot_dict(search, verdict.winner), "compared_at_steps": verdict.steps}
        summary["comparisons"] = {str(steps): [{"trial": p.number, "candidate": p.candidate, "difference": diff,
                                                "noise": threshold, "within_noise": within}
                                               for p, diff, threshold, within in rows]
                                  for steps, rows in verdict.comparisons.items()}
        summary["cheaper_within_noise"] = _pilot_dict(search, verdict.cheaper) if verdict.cheaper else None
    summary["final"] = _final_dict(search, verdict.winner, final_record) if verdict else None
    write_json(search.out / "recommendation.json", summary)
    plot = plot_curves(search, found, verdict, final_record, search.out / "curves.png")
    text = report_markdown(search, found, verdict, summary, plot)
    _atomic_write(search.out / "report.md", lambda tmp: Path(tmp).write_text(text))
    return summary


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _outcome(pilot, steps: tuple[int, ...]) -> str:
    if pilot.state == "complete":
        return "finished every rung"
    reached = [s for s in steps if s in pilot.values]
    if pilot.state == "pruned":
        if reached and math.isnan(pilot.values[reached[-1]]):
            return f"dropped at {reached[-1]} steps (diverged or over the memory limit)"
        return f"pruned at {reached[-1]} steps" if reached else "pruned"
    return "unfinished (budget)" if reached else "not started (budget)"


def report_markdown(search, found, verdict, summary: dict[str, Any], plot: Path | None) -> str:
    from loralab.recommend.halving import rung_steps

    config, label = search.config, metric_label(search.metric)
    steps = rung_steps(config.min_steps, config.eta, config.rungs)
    lines = ["# loralab recommend", ""]
    final = summary.get("final")
    if verdict is None:
        lines += ["No pilot finished with a score, so there is nothing to recommend "
                  f"({summary['stopped']}).", ""]
    else:
        w = verdict.winner
        lines += [f"**Recommended: `{w.candidate}` with {describe(w.settings)}** (trial {w.number}).", ""]
        if final:
            lines += [f"- Trained on all {search.train_examples:,} training examples ({final['steps']} steps): "
                      f"**{label} {_fmt(final.get(search.metric), 4)}** on all {search.valid_examples:,} validation "
                      f"examples; {final['train_seconds']:.0f} s of training (expected {_fmt(_cost(search, w), 0)} s "
                      f"from its pilots' step time; {_fmt(final.get('cpu_seconds'), 0)} CPU s in all, expected "
                      f"{_fmt(_budget_cost(search, w), 0)} {'CPU ' if config.clock == 'cpu' else ''}s of training), peak memory {final['peak_memory_mb']:,.0f} MB. Run folder: `{final['folder']}/`.", ""]
        else:
            lines += [f"- Expected cost to train it on all {search.train_examples:,} training examples "
                      f"({search.final_steps()} steps): {_fmt(_cost(search, w), 0)} s wall at its pilots' step time, "
                      f"{_fmt(_budget_cost(search, w), 0)} s on the budget's clock (not run here).", ""]
        lines += ["## Why it won", ""]
        clock = "CPU s" if config.clock == "cpu" else "s"
        lines.append(f"- It had the best {label} at {verdict.steps} steps, the most any pilot trained "
                     f"({_fmt(w.values[verdict.steps])} on the first {summary['pilot_valid']} validation examples), "
                     f"after surviving every rung before.")
        for at, rows in sorted(verdict.comparisons.items(), reverse=True):
            if not rows:
                lines.append(f"- At {at} steps no other pilot was trained, so it had no rival there.")
                continue
            p, diff, threshold, within = rows[0]
            near = [f"trial {q.number} `{q.candidate}` ({describe(q.settings)}, {d:+.3f})" for q, d, _, ok in rows if ok]
            lines.append(f"- At {at} steps ({_fmt(w.values[at])} against {len(rows)} other pilot(s)): the best "
                         f"other was trial {p.number} `{p.candidate}` ({describe(p.settings)}), {diff:+.3f}, "
                         + ("**within noise**" if within else "beyond noise") + f" (±{threshold:.3f}: twice the "
                         "standard error of a difference on these examples). "
                         + (f"Within noise: {'; '.join(near[:6])}" + (f" and {len(near) - 6} more" if len(near) > 6 else "")
                            + "." if near else "None is within noise."))
        if verdict.cheaper is not None:
            c = verdict.cheaper
            lines.append(f"- **The winner is within noise of a cheaper one: trial {c.number} `{c.candidate}` "
                         f"({describe(c.settings)})**, expected {_fmt(_budget_cost(search, c), 0)} {clock} to train on "
                         f"all the data against the winner's {_fmt(_budget_cost(search, w), 0)} {clock}; train it "
                         "instead if cost matters more than a difference this search cannot resolve.")
        elif verdict.rivals and any(ok for *_, ok in verdict.rivals):
            lines.append("- No rival within noise is more than 10% cheaper to train than the winner.")
        lines.append("")
    lines += _candidate_table(search, summary)
    lines += _pilot_table(search, found, verdict, steps, label)
    if summary["lora_final_lrs"]:
        lines += [f"LoRA settings that went furthest ended at learning rates "
                  f"{', '.join(f'{lr:.1e}' for lr in summary['lora_final_lrs'])}.", ""]
    spent = summary["spent_seconds"]
    lines += ["## Budget", "",
              f"{spent['total']:.0f} s spent of {config.budget_seconds:.0f} s: probes {spent['probe']:.0f} s, "
              f"pilots {spent['pilot']:.0f} s, final run {spent['final']:.0f} s, the search itself (sampler, study, counting "
              f"parameters) {spent['search']:.0f} s ({_CLOCKS[config.clock]}, loading "
              f"and scoring included). The search stopped: {summary['stopped']}.", ""]
    if plot is not None:
        lines += ["## Learning curves", "", f"![learning curves]({plot.name})", "",
                  f"Left: each pilot's validation {label} at each rung it reached (a line per trial; the winner thick). "
                  "Right: training loss per step of the pilots at the last rung and of the final run.", ""]
    lines += ["## Resuming and sharing", "",
              "Rerun the same command to resume: the study (`study.journal`) and the ledger of seconds spent "
              "(`ledger-<worker>.jsonl`) are read back, finished pilots are not redone, and a larger `--budget` "
              "continues the search. Every probe (`probes/`), pilot (`pilots/`) and the final run (`final/`) is an "
              "ordinary run folder for `report`, `merge`, `export-peft` and `predict`.", ""]
    return "\n".join(lines)


def _candidate_table(search, summary) -> list[str]:
    lines = ["## Candidates", "", "| candidate | learning rates searched | trainable params | estimate (MB) | "
             "probe peak (MB) | verdict |", "|---|---|---:|---:|---:|---|"]
    for c in summary["candidates"]:
        low, high = c["lr_range"]
        probe = "–" if c["probe_mb"] is None else f"{c['probe_mb']:,.0f}"
        verdict = "excluded: " + c["excluded"] if c["excluded"] else "fits"
        lines.append(f"| `{c['candidate']}` | {low:.0e} to {high:.0e} | {c['trainable_params']:,} | "
                     f"{c['estimate_mb']:,.0f} | {probe} | {verdict} |")
    return lines + [""]


def _pilot_table(search, found, verdict, steps, label) -> list[str]:
    head = " | ".join(f"{label} at {s}" for s in steps)
    clock = "CPU s" if search.config.clock == "cpu" else "s"
    lines = ["## Pilots", "", f"Scores on the first {min(search.config.pilot_valid, search.valid_examples)} "
             "validation examples; step: the median wall seconds per optimizer step in its pilots; expected full run: "
             "wall seconds at that step time, and on the budget's clock at its candidate's median cost per step.", "", f"| trial | candidate | settings | {head} | outcome | step (s) | expected full run "
             f"(s; {clock}) |", "|---:|---|---|" + "---:|" * len(steps) + "---|---:|---:|"]
    winner = verdict.winner.number if verdict else None
    for p in sorted(found, key=lambda p: p.number):
        cells = " | ".join(_fmt(p.values.get(s)) if s in p.values else "" for s in steps)
        name = f"**{p.number}**" if p.number == winner else str(p.number)
        lines.append(f"| {name} | `{p.candidate}` | {describe(p.settings)} | {cells} | {_outcome(p, steps)} | "
                     f"{_fmt(p.step_seconds, 2)} | {_fmt(_cost(search, p), 0)}; {_fmt(_budget_cost(search, p), 0)} |")
    return lines + [""]


def plot_curves(search, found, verdict, final_record, path: Path) -> Path | None:
    from matplotlib.figure import Figure

    from loralab.recommend.search import pilot_folder
    from loralab.reports.plots import _colors, _save
    from loralab.runs.artifacts import RECORD, read_json

    if not found:
        return None
    strategies = sorted({p.strategy for p in found})
    color = dict(zip(strategies, _colors(len(strategies))))
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    winner = verdict.winner.number if verdict else None
    for p in found:
        points = sorted((s, v) for s, v in p.values.items() if math.isfinite(v))
        if points:
            left.plot(*zip(*points), marker="o", color=color[p.strategy], alpha=0.9 if p.number == winner else 0.5,
                      linewidth=3 if p.number == winner else 1)
    for s in strategies:
        left.plot([], [], color=color[s], label=s)
    from loralab.recommend.halving import rung_steps

    left.set_xscale("log", base=search.config.eta)
    rungs = rung_steps(search.config.min_steps, search.config.eta, search.config.rungs)
    left.set_xticks(rungs, [str(s) for s in rungs])
    left.minorticks_off()
    left.set_xlabel("pilot steps")
    left.set_ylabel(metric_label(search.metric))
    left.set_title("pilots by rung")
    left.legend(fontsize="small")
    top = verdict.steps if verdict else None
    for p in found:
        if top is None or top not in p.values:
            continue
        record = pilot_folder(search.out, p.number, p.candidate, top) / RECORD
        if record.exists():
            loss = read_json(record).get("loss", [])
            right.plot(range(1, len(loss) + 1), loss, color=color[p.strategy], alpha=0.6, linewidth=1)
    if final_record and final_record.get("loss"):
        loss = final_record["loss"]
        right.plot(range(1, len(loss) + 1), loss, color="black", linewidth=1.5, label="final run")
        right.legend(fontsize="small")
    right.set_xlabel("optimizer step")
    right.set_ylabel("training loss")
    right.set_title("training loss")
    fig.tight_layout()
    return _save(fig, path)
