"""The scale benchmark's report: a Markdown table headed by the largest model each method trains, and a
plot of peak memory against parameters per method (log x) with the machine's memory and the limit.

    python benchmarks/scale_report.py benchmarks/results/scale.json   # or: scale.py --report-only
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"full": "full fine-tuning (fp32, AdamW)", "lora": "LoRA, fp32 base", "lora-bf16": "LoRA, bf16 base",
          "qlora": "QLoRA (NF4, double quant.)"}


def _billions(params: int) -> str:
    return f"{params / 1e9:.2f} B"


def headline(data: dict, length: int) -> list[tuple[str, dict | None]]:
    """Per method, the attempt with the most parameters that fit at `length` (with or without checkpointing)."""
    best = []
    for method in LABELS:
        fitting = [r for r in data["attempts"] if r["method"] == method and r["length"] == length and r["fits"] == "yes"]
        best.append((method, max(fitting, key=lambda r: (r["params"], not r["checkpointing"]), default=None)))
    return [(m, r) for m, r in best if r is not None or any(a["method"] == m for a in data["attempts"])]


def markdown(data: dict, image: str) -> str:
    settings, info = data["settings"], data["machine"]
    length = settings["length"]
    lines = ["# Which models each method trains on this machine", ""]
    if data.get("partial", True):
        lines += ["**Partial result**: not every configuration and method of the ladder is recorded yet "
                  "(see the table); the headline covers only what was tried.", ""]
    limit = settings["limit_gib"]
    lines += [f"Random weights of real configurations, batch 1, {length} tokens, a few AdamW steps "
              f"(the last one timed; how many: the table's last column), each attempt in its own process limited to {limit} GiB of "
              f"the machine's {info['memory_gib']} GiB. Peak memory is the child's peak resident set "
              "(VmHWM: building included). Seconds are wall-clock on a machine that may be shared: the load "
              "average beside each attempt says how busy it was.", "",
              f"## Headline: the largest model each method trains at {length} tokens", "",
              "| method | largest that fits | parameters | peak RSS (GiB) | checkpointing | s / step |", "|---|---|---:|---:|---|---:|"]
    for method, r in headline(data, length):
        if r is None:
            lines.append(f"| {LABELS[method]} | none tried fits | | | | |")
        else:
            lines.append(f"| {LABELS[method]} | {r['model']} | {_billions(r['params'])} | {r['peak_rss_gib']:.2f} | "
                         f"{'yes' if r['checkpointing'] else 'no'} | {r['seconds_per_step']:.1f} |")
    lines += ["", "## Every attempt", "",
              "| model | parameters | method | checkpointing | length | fits | peak RSS (GiB) | estimate (GiB) | "
              "s / step (last) | build (s) | attempt (s) | load (1 min) | steps |", "|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(data["attempts"], key=lambda r: (r["length"], r["params"], list(LABELS).index(r["method"]),
                                                     r["checkpointing"])):
        fits = r["fits"] + (f" ({r['by']})" if r.get("by") else "") + (f" ({r['killed']})" if r.get("killed") else "")
        peak = f"{r['peak_rss_gib']:.2f}" if "peak_rss_gib" in r else ""
        step = f"{r['seconds_per_step']:.1f}" if "seconds_per_step" in r else ""
        build = f"{r['build_seconds']:.1f}" if "build_seconds" in r else ""
        total = f"{r['attempt_seconds']:.0f}" if "attempt_seconds" in r else ""
        load = f"{r['load_average_1min']:.1f}" if "load_average_1min" in r else ""
        lines.append(f"| {r['model']} | {_billions(r['params'])} | {r['method']} | {'yes' if r['checkpointing'] else 'no'} "
                     f"| {r['length']} | {fits} | {peak} | {r['estimate_gib']:.2f} | {step} | {build} | {total} | {load} | {r.get('steps', '')} |")
    lines += ["", "The estimate is a lower bound: weights, gradients and optimizer state alone (full: 16 bytes "
              "a parameter; LoRA: 4, bf16 base: 2, NF4: about 0.52 for the quantized layers and 4 for the rest), "
              "plus 0.5 GiB for the interpreter. An attempt whose estimate is over the limit is not run.", "",
              f"![peak memory against parameters]({image})", "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    commands = settings.get("commands") or [settings["command"]]
    lines += ["", "Command" + ("s (the ladder resumed)" if len(commands) > 1 else "") + ": "
              + "; ".join(f"`{c}`" for c in commands), ""]
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    settings, info = data["settings"], data["machine"]
    fig, ax = plt.subplots(figsize=(8, 5))
    for index, method in enumerate(LABELS):
        for ckpt, style in ((False, "-"), (True, "--")):
            rows = sorted((r for r in data["attempts"] if r["method"] == method and r["checkpointing"] == ckpt
                           and r["length"] == settings["length"]), key=lambda r: r["params"])
            fits = [r for r in rows if r["fits"] == "yes"]
            label = LABELS[method] + (" + checkpointing" if ckpt else "")
            ax.plot([r["params"] for r in fits], [r["peak_rss_gib"] for r in fits], style, marker="o",
                    color=f"C{index}", label=label)
            misses = [r for r in rows if r["fits"] != "yes" and r["fits"] != "error"]
            # A miss: measured up to where it was stopped, else its estimate (a lower bound).
            ax.scatter([r["params"] for r in misses],
                       [r.get("peak_rss_gib") or r["estimate_gib"] for r in misses], marker="x", color=f"C{index}")
    ax.axhline(info["memory_gib"], color="black", linewidth=1)
    ax.annotate(f"machine: {info['memory_gib']} GiB", (0.01, info["memory_gib"]), xycoords=("axes fraction", "data"),
                xytext=(0, 3), textcoords="offset points", fontsize=8)
    ax.axhline(settings["limit_gib"], color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("peak resident memory (GiB)")
    ax.set_title(f"Training step memory on CPU, batch 1 x {settings['length']} tokens "
                 f"(x: did not fit; dotted: the {settings['limit_gib']} GiB limit)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(data: dict, stem: Path, docs: Path | None = None) -> None:
    """Write STEM.md and STEM.png from the benchmark's record (and the plot to `docs` too, if given)."""
    stem = Path(stem)
    plot(data, stem.with_suffix(".png"))
    if docs is not None:
        shutil.copyfile(stem.with_suffix(".png"), docs)
    stem.with_suffix(".md").write_text(markdown(data, stem.with_suffix(".png").name))


if __name__ == "__main__":
    json_path = Path(sys.argv[1])
    report(json.loads(json_path.read_text()), json_path.with_suffix(""))
