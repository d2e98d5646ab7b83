"""`report.md` and `report.html` of a comparison, from `compare.json` alone.

One document, written twice: the answer in a sentence, the methods ranked by their final runs' mean
with noise verdicts and costs, the budget as split and as spent, and each method's bracket.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from loralab.errors import LoralabError
from loralab.metrics import METRICS
from loralab.runs.artifacts import _atomic_write, read_json

COMPARE = "compare.json"
Block = tuple[str, Any]  # ("h1" | "h2" | "p", text) or ("table", (header, rows))


def _num(value: Any, digits: int = 3) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _scored(pilot: dict[str, Any], steps: str) -> str:
    """A pilot's score at `steps`, with its validation loss in brackets where its record holds one, and each
    seed's score after it at a rung of several seeds (the score is their mean)."""
    loss = pilot.get("losses", {}).get(steps)
    seeds = pilot.get("seeds", {}).get(steps)
    return (_num(pilot["values"].get(steps)) + (f" ({_num(loss)})" if isinstance(loss, (int, float)) else "")
            + (f" = mean of {', '.join(_num(v) for v in seeds)}" if seeds else ""))


def _int(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:,.0f}"


def _value(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else str(value)


def _settings(settings: dict[str, Any] | None) -> str:
    if not settings:
        return "-"
    parts = []
    for key, value in settings.items():
        parts.append(f"{key} {value:.2g}" if key == "lr" else f"{key} {_value(value)}")
    return ", ".join(parts)


def _ranking(rec: dict[str, Any], label: str) -> Block:
    header = ["rank", "method", "best setting", f"{label} (mean ± sd, n)", "vs best", "train s", "peak MB",
              "trainable", "stored bytes"]
    rows = []
    for m in rec["methods"]:
        score = "-" if m.get("mean") is None else (f"{m['mean']:.3f}" + (f" ± {m['sd']:.3f}" if m.get("sd") is not None
                                                                         else "") + f" ({m['n']})")
        verdict = m.get("verdict") or ("not searched yet" if m["method"] in rec.get("pending", ())
                                       else "no final run" if m.get("best") else "no pilot scored")
        if m.get("difference") is not None:
            verdict = f"{m['difference']:+.3f}: {verdict}"
        rows.append([str(m.get("rank") or "-"), m["method"], _settings((m.get("best") or {}).get("settings")), score,
                     verdict, _num(m.get("train_seconds"), 1), _num(m.get("peak_memory_mb"), 0),
                     _int(m.get("trainable_params")), _int(m.get("stored_bytes"))])
    return "table", (header, rows)


def _budget(rec: dict[str, Any]) -> list[Block]:
    b = rec["budget"]
    header = ["method", "share s", "pilots s", "finals s", "spent s", "pilots run", "bracket stopped by"]
    rows = [[m["method"], _num(b["per_method"][m["method"]]["share_seconds"], 0),
             _num(b["per_method"][m["method"]]["pilot_seconds"], 0),
             _num(b["per_method"][m["method"]]["final_seconds"], 0),
             _num(b["per_method"][m["method"]]["spent_seconds"], 0),
             str(sum(len(p["values"]) for p in m["pilots"])),
             m.get("stopped") or ("not started yet" if m["method"] in rec.get("pending", ()) else "its rungs (done)")]
            for m in rec["methods"]]
    over = " That is over the budget: a method's first pilot and its final runs always run." if b["over_budget"] else ""
    text = (f"Budget {b['budget_seconds']:.0f} s ({b['clock']} clock), split evenly between {len(rows)} method(s); "
            f"spent {b['spent_seconds']:.0f} s, of which {b['search_seconds']:.0f} s outside the runs.{over}")
    return [("h2", "Budget"), ("p", text), ("table", (header, rows))]


def _brackets(rec: dict[str, Any], label: str) -> list[Block]:
    out: list[Block] = [("h2", "Each method's bracket"),
                        ("p", f"Pilots train on the first steps x batch examples and are scored on the first "
                              f"{rec['pilot_valid']} validation examples; each rung keeps the best of its own "
                              "method's pilots, and of pilots that score alike, those with the lower validation "
                              "loss (in brackets after each score, where recorded).")]
    for m in rec["methods"]:
        if m["method"] in rec.get("pending", ()) and not m["pilots"]:
            out.append(("p", f"**{m['method']}**: not searched yet."))
            continue
        steps = [str(s) for s in m["rung_steps"]]
        header = ["setting", "settings"] + [f"{label} at {s} steps" for s in steps] + ["state"]
        best = (m.get("best") or {}).get("setting")
        rows = [[f"{p['setting']}" + (" (best)" if p["setting"] == best else ""), _settings(p["settings"])]
                + [_scored(p, s) for s in steps] + [p["state"]] for p in m["pilots"]]
        lo, hi = m["lr_range"]
        seeds = m.get("last_rung_seeds") or 1
        shape = (f"{m['bracket_settings']} settings over rungs of {', '.join(steps)} steps"
                 + (", shaped to fill its share" if m.get("bracket_filled") else "")
                 + (f", the last rung's pilots with {seeds} seeds each (their mean ranks them)" if seeds > 1 else "")
                 + "".join(f", the {k}-step rung trimmed to {n} settings so that the last rung fit its share"
                           for k, n in (m.get("trimmed") or {}).items())
                 + "".join(f", setting {i} entering the {k}-step rung for its lower rate (its survivors had about one)"
                           for k, i in (m.get("hedged") or {}).items())
                 + "; " if "bracket_settings" in m else "")  # compare.json from before it said
        reused = [str(f["seed"]) for f in m.get("finals", []) if f.get("trained_in")]
        out += [("p", f"**{m['method']}**: {shape}learning rates {lo:.0e} to {hi:.0e}"
                      + "".join(f"; {k} from {' or '.join(_value(x) for x in v)}" for k, v in m["choices"].items())
                      + "." + (f" Its final run{'s' if len(reused) > 1 else ''} of seed{'s' if len(reused) > 1 else ''} "
                               f"{', '.join(reused)}: the best setting's last-rung pilot{'s' if len(reused) > 1 else ''}, "
                               "which trained the same run step for step, scored on all the validation data."
                               if reused else "")),
                ("table", (header, rows))]
    return out


def document(rec: dict[str, Any]) -> list[Block]:
    """The report as blocks, from compare.json."""
    metric = rec["metric"]
    label = METRICS[metric].label if metric in METRICS else metric
    intro = (f"{len(rec['methods'])} method(s), each searched in its own successive-halving bracket, then its best "
             f"setting trained on all {rec['train_examples']} training examples with seeds {rec['seeds']} and scored "
             f"on {rec['valid_examples']} validation examples ({rec['final_steps']} steps a run). A method is within "
             "noise of the best when the difference of the means is under twice its standard error (seed to seed).")
    return [("h1", "Which fine-tuning method is worth it?"), ("p", f"**{rec['answer']}**"), ("p", intro),
            ("h2", "Ranking"), _ranking(rec, label), *_machines(rec), *_edges(rec), *_budget(rec),
            *_brackets(rec, label)]


def _machines(rec: dict[str, Any]) -> list[Block]:
    """A sentence when the methods' final runs were timed on different processors (a comparison resumed across
    machines): their seconds, and the budget's, then compare only between methods timed on the same one."""
    by_cpu: dict[str, list[str]] = {}
    for m in rec["methods"]:
        for cpu in m.get("cpus") or []:
            by_cpu.setdefault(cpu, []).append(m["method"])
    if len(by_cpu) < 2:
        return []
    parts = "; ".join(f"{', '.join(names)} on " + ("a processor not recorded (runs before loralab recorded it)"
                                                   if cpu == "not recorded" else cpu)
                      for cpu, names in sorted(by_cpu.items()))
    return [("p", f"**Timed on different processors**: {parts}. Training seconds (and the budget's) compare only "
                  "between methods timed on the same one; scores, parameter counts and stored bytes do not depend on it.")]


def _edges(rec: dict[str, Any]) -> list[Block]:
    """A sentence for each method whose best rate is the lowest or highest its bracket tried."""
    edges = [(m["method"], m["best"]["settings"]["lr"], m["best"]["rate_at_edge"]) for m in rec["methods"]
             if (m.get("best") or {}).get("rate_at_edge")]
    return [("p", f"**{name}'s best learning rate ({lr:.2g}) is the {edge} its bracket tried**: a "
                  f"{'lower' if edge == 'lowest' else 'higher'} rate, outside its range, may do better, so this "
                  f"ranking judges {name} at the best of its range, not shown to be its best.")
            for name, lr, edge in edges]


def markdown(blocks: list[Block]) -> str:
    lines = []
    for kind, body in blocks:
        if kind == "table":
            header, rows = body
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
        else:
            lines.append({"h1": "# ", "h2": "## ", "p": ""}[kind] + body)
        lines.append("")
    return "\n".join(lines)


def page(blocks: list[Block]) -> str:
    def inline(text: str) -> str:
        parts = html.escape(text).split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    body = []
    for kind, content in blocks:
        if kind == "table":
            header, rows = content
            body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                        + "</table>")
        else:
            body.append(f"<{kind}>{inline(content)}</{kind}>")
    style = ("body{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f4f4f4}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>loralab compare</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")


def write_report(out: str | Path) -> list[Path]:
    """report.md and report.html from `out/compare.json`; the files written."""
    out = Path(out)
    if not (out / COMPARE).exists():
        raise LoralabError(f"{out}: no {COMPARE} (not a finished loralab compare folder)")
    blocks = document(read_json(out / COMPARE))
    written = []
    for name, text in (("report.md", markdown(blocks)), ("report.html", page(blocks))):
        _atomic_write(out / name, lambda tmp, text=text: Path(tmp).write_text(text))
        written.append(out / name)
    return written
