"""A recommendation's report: `report.md` and `curves.png`, from `recommendation.json` and the run records.

The search's result is read back from the folder (`driver.py` writes it), never taken from the live
search, so rebuilding the report changes nothing. The noise rule: a rival is *within noise* of the
winner when their difference is under twice the standard error of a difference of two scores on
the pilots' validation examples (`verdict.py`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from loralab.recommendation.folder import CURVES, RECOMMENDATION, REPORT
from loralab.recommendation.space import describe
from loralab.reports.plots import colors, save_png
from loralab.reports.rows import metric_label
from loralab.runs.artifacts import RECORD, _atomic_write, read_json

_CLOCKS = {"wall": "wall-clock seconds", "cpu": "CPU seconds of the search's process"}


def read_recommendation(out: Path) -> dict[str, Any]:
    """`recommendation.json` with its scores as numbers again: each pilot's values keyed by step count
    (NaN where a pilot diverged or went over the memory limit), comparisons keyed by step count."""
    rec = read_json(Path(out) / RECOMMENDATION)
    for pilot in rec["pilots"]:
        pilot["values"] = {int(k): float(v) for k, v in pilot["values"].items()}
        pilot["folders"] = {int(k): v for k, v in pilot["folders"].items()}
    rec["comparisons"] = {int(k): v for k, v in rec.get("comparisons", {}).items()}
    return rec


def write_report(out: Path) -> Path:
    """Write `report.md` and `curves.png` into the search's folder `out`, from what it holds."""
    out = Path(out)
    rec = read_recommendation(out)
    plot = plot_curves(out, rec, out / CURVES)
    text = report_markdown(rec, plot)
    _atomic_write(out / REPORT, lambda tmp: Path(tmp).write_text(text))
    return out / REPORT


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _outcome(pilot: dict[str, Any], steps: tuple[int, ...]) -> str:
    if pilot["state"] == "complete":
        return "finished every rung" if len(pilot["values"]) >= len(steps) else \
            f"finished its bracket's {len(pilot['values'])} rung(s) (budget)"
    reached = [s for s in steps if s in pilot["values"]]
    if pilot["state"] == "pruned":
        if reached and math.isnan(pilot["values"][reached[-1]]):
            return f"dropped at {reached[-1]} steps (diverged or over the memory limit)"
        return f"pruned at {reached[-1]} steps" if reached else "pruned"
    return "unfinished (budget)" if reached else "not started (budget)"


def _rivals(comparisons: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The comparisons at the largest step count where the winner had a rival."""
    return next((comparisons[s] for s in sorted(comparisons, reverse=True) if comparisons[s]), [])


def _verdict(rec: dict[str, Any], label: str) -> list[str]:
    """The recommendation, what its final run gave, and why it won."""
    by_trial = {p["trial"]: p for p in rec["pilots"]}
    w, final, metric = by_trial[rec["winner"]["trial"]], rec["final"], rec["metric"]
    top, clock = rec["winner"]["compared_at_steps"], "CPU s" if rec["budget_clock"] == "cpu" else "s"
    lines = [f"**Recommended: `{w['candidate']}` with {describe(w['settings'])}** (trial {w['trial']}).", ""]
    if final:
        pilot = final.get("pilot_steps")
        steps = f"{final['steps']} steps" + (f"; its longest pilot trained {pilot}" if pilot is not None else "")
        lines += [f"- Trained on all {rec['train_examples']:,} training examples ({steps}): "
                  f"**{label} {_fmt(final.get(metric), 4)}** on all {rec['valid_examples']:,} validation "
                  f"examples (its {top}-step pilot: {_fmt(w['values'][top], 4)} on the first "
                  f"{rec['pilot_valid']:,}); {final['train_seconds']:.0f} s of training "
                  f"(expected {_fmt(w['expected_train_seconds'], 0)} s from its pilots' step time; "
                  f"{_fmt(final.get('cpu_seconds'), 0)} CPU s in all, expected "
                  f"{_fmt(w['expected_budget_seconds'], 0)} {'CPU ' if rec['budget_clock'] == 'cpu' else ''}s of "
                  f"training), peak memory {final['peak_memory_mb']:,.0f} MB. Run folder: `{final['folder']}/`.", ""]
    else:
        lines += [f"- Expected cost to train it on all {rec['train_examples']:,} training examples "
                  f"({rec['final_steps']} steps): {_fmt(w['expected_train_seconds'], 0)} s wall at its pilots' step "
                  f"time, {_fmt(w['expected_budget_seconds'], 0)} s on the budget's clock (not run here).", ""]
    lines += ["## Why it won", ""]
    lines.append(f"- It had the best {label} at {top} steps, the most any pilot trained "
                 f"({_fmt(w['values'][top])} on the first {rec['pilot_valid']} validation examples), "
                 f"after surviving every rung before.")
    for at, rows in sorted(rec["comparisons"].items(), reverse=True):
        if not rows:
            lines.append(f"- At {at} steps no other pilot was trained, so it had no rival there.")
            continue
        best = rows[0]
        p = by_trial[best["trial"]]
        near = [f"trial {q['trial']} `{q['candidate']}` ({describe(by_trial[q['trial']]['settings'])}, "
                f"{q['difference']:+.3f})" for q in rows if q["within_noise"]]
        lines.append(f"- At {at} steps ({_fmt(w['values'][at])} against {len(rows)} other pilot(s)): the best "
                     f"other was trial {p['trial']} `{p['candidate']}` ({describe(p['settings'])}), "
                     f"{best['difference']:+.3f}, " + ("**within noise**" if best["within_noise"] else "beyond noise")
                     + f" (±{best['noise']:.3f}: twice the standard error of a difference on these examples). "
                     + (f"Within noise: {'; '.join(near[:6])}" + (f" and {len(near) - 6} more" if len(near) > 6 else "")
                        + "." if near else "None is within noise."))
    cheaper = rec.get("cheaper_within_noise")
    if cheaper is not None:
        c = by_trial[cheaper["trial"]]
        lines.append(f"- **The winner is within noise of a cheaper one: trial {c['trial']} `{c['candidate']}` "
                     f"({describe(c['settings'])})**, expected {_fmt(c['expected_budget_seconds'], 0)} {clock} to "
                     f"train on all the data against the winner's {_fmt(w['expected_budget_seconds'], 0)} {clock}; "
                     "train it instead if cost matters more than a difference this search cannot resolve.")
    elif any(q["within_noise"] for q in _rivals(rec["comparisons"])):
        lines.append("- No rival within noise is more than 10% cheaper to train than the winner.")
    return lines + [""]


def report_markdown(rec: dict[str, Any], plot: Path | None) -> str:
    """The text of `report.md` (`rec` as `read_recommendation` returns it)."""
    label, steps = metric_label(rec["metric"]), tuple(rec["rung_steps"])
    lines = ["# loralab recommend", ""]
    if "winner" not in rec:
        lines += ["No pilot finished with a score, so there is nothing to recommend "
                  f"({rec['stopped']}).", ""]
    else:
        lines += _verdict(rec, label)
    lines += _candidate_table(rec)
    lines += _pilot_table(rec, steps, label)
    if rec["lora_final_lrs"]:
        lines += [f"LoRA settings that went furthest ended at learning rates "
                  f"{', '.join(f'{lr:.1e}' for lr in rec['lora_final_lrs'])}.", ""]
    lines += _budget(rec)
    if plot is not None:
        lines += ["## Learning curves", "", f"![learning curves]({plot.name})", "",
                  f"Left: each pilot's validation {label} at each rung it reached (a line per trial; the winner "
                  "thick). Right: training loss per step of the pilots at the last rung and of the final run.", ""]
    lines += ["## Resuming and sharing", "",
              "Rerun the same command to resume: the study (`study.journal`) and the ledger of seconds spent "
              "(`ledger-<worker>.jsonl`) are read back, finished pilots are not redone, and a larger `--budget` "
              "continues the search. Every probe (`probes/`), pilot (`pilots/`) and the final run (`final/`) is an "
              "ordinary run folder for `report`, `merge`, `export-peft` and `predict`.", ""]
    return "\n".join(lines)


def _budget(rec: dict[str, Any]) -> list[str]:
    """What the budget went to, how it was split among the candidates, and why the search stopped."""
    spent, budget = rec["spent_seconds"], rec["budget_seconds"]
    lines = ["## Budget", "",
             f"{spent['total']:.0f} s spent of {budget:.0f} s ({spent['total'] / budget:.0%}): probes "
             f"{spent['probe']:.0f} s, pilots {spent['pilot']:.0f} s, final run {spent['final']:.0f} s, the search "
             f"itself (sampler, study, counting parameters) {spent['search']:.0f} s ({_CLOCKS[rec['budget_clock']]}, "
             f"each run's loading and scoring included). The search stopped: {rec['stopped']}."
             + (" **It stopped early** (under 90% of the budget used)." if spent["total"] < 0.9 * budget else ""), ""]
    split = rec.get("split")
    if not split:
        return lines
    lines += [f"Each candidate is a bracket family of its own: successive halving runs within it. After "
              f"{split['spent_before']:.0f} s of screening, {split['final_reserve']:.0f} s were kept for the final "
              f"run (the costliest candidate's) and {split['share']:.0f} s given to each of the "
              f"{len(split['candidates'])} candidates for its first bracket; what was left was split again among "
              "those that could go on. A pilot starts only while it and the final run of whichever candidate "
              "could lead after it still fit.", "",
              "| candidate | shares (s) | spent on pilots (s) | settings | pilots | most steps |",
              "|---|---|---:|---:|---:|---:|"]
    for f in rec.get("families", []):
        shares = ", ".join(f"{s:.0f}" for s in f["shares"]) or "–"
        lines.append(f"| `{f['candidate']}` | {shares} | {f['spent']:.0f} | {f['settings']} | {f['pilots']} | "
                     f"{f['top_steps'] if f['top_steps'] is not None else '–'} |")
    return lines + [""]


def _candidate_table(rec: dict[str, Any]) -> list[str]:
    lines = ["## Candidates", "", "| candidate | learning rates searched | trainable params | estimate (MB) | "
             "probe peak (MB) | verdict |", "|---|---|---:|---:|---:|---|"]
    for c in rec["candidates"]:
        low, high = c["lr_range"]
        probe = "–" if c["probe_mb"] is None else f"{c['probe_mb']:,.0f}"
        verdict = "excluded: " + c["excluded"] if c["excluded"] else "fits"
        lines.append(f"| `{c['candidate']}` | {low:.0e} to {high:.0e} | {c['trainable_params']:,} | "
                     f"{c['estimate_mb']:,.0f} | {probe} | {verdict} |")
    return lines + [""]


def _pilot_table(rec: dict[str, Any], steps: tuple[int, ...], label: str) -> list[str]:
    head = " | ".join(f"{label} at {s}" for s in steps)
    clock = "CPU s" if rec["budget_clock"] == "cpu" else "s"
    lines = ["## Pilots", "", f"Scores on the first {rec['pilot_valid']} validation examples; step: the median wall "
             "seconds per optimizer step in its pilots; expected full run: wall seconds at that step time, and on the "
             "budget's clock at its candidate's median cost per step.", "",
             f"| trial | candidate | settings | {head} | outcome | step (s) | expected full run (s; {clock}) |",
             "|---:|---|---|" + "---:|" * len(steps) + "---|---:|---:|"]
    winner = rec["winner"]["trial"] if "winner" in rec else None
    for p in sorted(rec["pilots"], key=lambda p: p["trial"]):
        cells = " | ".join(_fmt(p["values"].get(s)) if s in p["values"] else "" for s in steps)
        name = f"**{p['trial']}**" if p["trial"] == winner else str(p["trial"])
        lines.append(f"| {name} | `{p['candidate']}` | {describe(p['settings'])} | {cells} | {_outcome(p, steps)} | "
                     f"{_fmt(p['median_step_seconds'], 2)} | {_fmt(p['expected_train_seconds'], 0)}; "
                     f"{_fmt(p['expected_budget_seconds'], 0)} |")
    return lines + [""]


def _loss(path: Path) -> list[float]:
    """A run record's training loss per step ([] when the run has no record)."""
    return [float(x) for x in read_json(path).get("loss", [])] if path.exists() else []


def plot_curves(out: Path, rec: dict[str, Any], path: Path) -> Path | None:
    """Left: each pilot's score at each rung it reached; right: the training loss of the pilots at the
    step count the winner was chosen at, and of the final run."""
    from matplotlib.figure import Figure

    found = rec["pilots"]
    if not found:
        return None
    method = {p["trial"]: p.get("method", p["strategy"]) for p in found}  # older searches name strategies only
    strategies = sorted(set(method.values()))
    color = dict(zip(strategies, colors(len(strategies))))
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    winner = rec["winner"]["trial"] if "winner" in rec else None
    for p in found:
        points = sorted((s, v) for s, v in p["values"].items() if math.isfinite(v))
        if points:
            left.plot(*zip(*points), marker="o", color=color[method[p["trial"]]], alpha=0.9 if p["trial"] == winner else 0.5,
                      linewidth=3 if p["trial"] == winner else 1)
    for s in strategies:
        left.plot([], [], color=color[s], label=s)
    left.set_xscale("log", base=rec["eta"])
    rungs = rec["rung_steps"]
    left.set_xticks(rungs, [str(s) for s in rungs])
    left.minorticks_off()
    left.set_xlabel("pilot steps")
    left.set_ylabel(metric_label(rec["metric"]))
    left.set_title("pilots by rung")
    left.legend(fontsize="small")
    top = rec["winner"]["compared_at_steps"] if "winner" in rec else None
    for p in found:
        if top is None or top not in p["values"]:
            continue
        loss = _loss(out / p["folders"][top] / RECORD)
        if loss:
            right.plot(range(1, len(loss) + 1), loss, color=color[method[p["trial"]]], alpha=0.6, linewidth=1)
    loss = _loss(out / rec["final"]["folder"] / RECORD) if rec["final"] else []
    if loss:
        right.plot(range(1, len(loss) + 1), loss, color="black", linewidth=1.5, label="final run")
        right.legend(fontsize="small")
    right.set_xlabel("optimizer step")
    right.set_ylabel("training loss")
    right.set_title("training loss")
    fig.tight_layout()
    return save_png(fig, path)
