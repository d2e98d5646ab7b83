"""The scale ladder's table, plot and verdicts: MAP@3 against peak memory and training time.

After `loralab sweep experiments/scale-ladder.yaml --out experiments/results/scale-ladder` (two
processes may share it with --shard 1/2 and 2/2), this reads every finished run record, groups
them by the experiment's row names, and writes `tables.md`, `summary.json` and `ladder.png`
(MAP@3 against peak memory, and against training time, one point per row with its seeds' spread)
into the sweep folder. Rows from other sweeps on the same data can be added with --extra
(FOLDER:ROW NAME), e.g. the SmolLM2 LoRA run of experiments/results/decoder-mc.

Two questions are answered with the report's noise rule (a difference is beyond noise when it is
larger than twice its standard error; rows with one seed borrow the pooled seed-to-seed deviation):
- does MPNet-base QLoRA score within noise of MPNet-base LoRA (the QLoRA paper's claim)?
- the seed's promise: does (Q)LoRA on MPNet-base, about five times MiniLM's size, beat MiniLM's
  full fine-tuning beyond noise, and within MiniLM full's peak memory?

    python experiments/scale_ladder.py experiments/results/scale-ladder \\
        --extra "experiments/results/decoder-mc/lora_alpha-16_targets-all-linear_lr-0.0005_seed-0:SmolLM2-135M LoRA (letter)"
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

QUALITY = ("MPNet-base QLoRA + checkpointing", "MPNet-base LoRA")
PROMISE = ("MPNet-base QLoRA + checkpointing", "MPNet-base LoRA")
BASELINE = "MiniLM full"


def rows_of(folder: Path, extra: list[str]) -> dict[str, list[dict]]:
    """Row name -> the finished run records of that row."""
    sweep = json.loads((folder / "sweep.json").read_text())
    rows: dict[str, list[dict]] = {}
    for entry in sweep["runs"]:
        path = folder / entry["folder"] / "run.json"
        if path.exists():
            record = json.loads(path.read_text())
            if record.get("status") == "completed" and record.get("valid"):
                rows.setdefault(entry["labels"][0], []).append(record)
    for item in extra:
        run_dir, name = item.split(":", 1)
        record = json.loads((Path(run_dir) / "run.json").read_text())
        if record.get("status") == "completed" and record.get("valid"):
            rows.setdefault(name, []).append(record)
    return rows


def stats(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(rows: dict[str, list[dict]]) -> dict:
    table = {}
    for name, records in rows.items():
        maps = [r["valid"]["map@3"] for r in records]
        table[name] = {
            "seeds": [r["config"]["training"]["seed"] for r in records],
            "map@3": stats(maps), "map@3_values": maps,
            "train_seconds": stats([r["train_seconds"] for r in records]),
            "train_seconds_values": [r["train_seconds"] for r in records],
            "peak_memory_mb_values": [r["peak_memory_mb"] for r in records],
            "median_step_seconds": stats([r["median_step_seconds"] for r in records]),
            "peak_memory_mb": stats([r["peak_memory_mb"] for r in records]),
            "trainable_params": records[0]["trainable_params"], "total_params": records[0]["total_params"],
        }
    spreads = [(len(v["map@3_values"]) - 1, v["map@3"][1]) for v in table.values() if v["map@3"][1] is not None]
    dof = sum(d for d, _ in spreads)
    pooled = math.sqrt(sum(d * s * s for d, s in spreads) / dof) if dof else None
    return {"rows": table, "pooled_sd": pooled}


def compare(summary: dict, a: str, b: str) -> dict | None:
    rows, pooled = summary["rows"], summary["pooled_sd"]
    if a not in rows or b not in rows or pooled is None:
        return None
    ra, rb = rows[a], rows[b]
    sd_a = ra["map@3"][1] if ra["map@3"][1] is not None else pooled
    sd_b = rb["map@3"][1] if rb["map@3"][1] is not None else pooled
    se = math.sqrt(sd_a ** 2 / len(ra["map@3_values"]) + sd_b ** 2 / len(rb["map@3_values"]))
    diff = ra["map@3"][0] - rb["map@3"][0]
    return {"a": a, "b": b, "difference": round(diff, 4), "two_se": round(2 * se, 4),
            "verdict": "within noise" if abs(diff) <= 2 * se else ("better beyond noise" if diff > 0 else "worse beyond noise")}


def fmt(stat: tuple[float, float | None], digits: int, scale: float = 1.0) -> str:
    mean, sd = stat
    text = f"{mean * scale:,.{digits}f}"
    return text + (f" ± {sd * scale:,.{digits}f}" if sd is not None else "")


def plot(summary: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, key, label in ((axes[0], "peak_memory_mb", "peak memory (GB, whole-run RSS; later runs of a process inflated)"),
                           (axes[1], "train_seconds", "training time (s, 1 thread, shared CPU)")):
        for index, (name, row) in enumerate(summary["rows"].items()):
            scale = 1 / 1024 if key == "peak_memory_mb" else 1.0
            color = f"C{index % 10}"
            xs = [x * scale for x in row[f"{key}_values"]]
            ax.scatter(xs, row["map@3_values"], s=22, color=color, alpha=0.6)  # every seed: the spread is the story
            x, y = row[key][0] * scale, row["map@3"][0]
            ax.scatter([x], [y], s=90, marker="D", color=color, edgecolor="black", label=name)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MAP@3 (500 validation questions)")
    axes[0].axhline(0.367, color="grey", linestyle=":", linewidth=1)
    axes[1].axhline(0.367, color="grey", linestyle=":", linewidth=1)
    fig.suptitle("Scale ladder on science-exam (2,000 training questions): dots seeds, diamonds means; dotted: chance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--extra", action="append", default=[], help="FOLDER:ROW NAME of a run from another sweep")
    parser.add_argument("--fresh", action="append", default=[],
                        help="a run folder that was the first run of its process: only these give the memory verdict "
                             "(before loralab 4aad067 a sweep's later runs also counted heap its earlier runs freed)")
    parser.add_argument("--baseline", default=BASELINE,
                        help=f"the row the promise compares with (default {BASELINE!r}; e.g. a row added with --extra)")
    parser.add_argument("--baseline-memory-mb", type=float,
                        help="MiniLM full's whole-run peak from a clean measurement (the seed-blog sweep: 3,111)")
    args = parser.parse_args()
    folder = Path(args.folder)
    summary = summarise(rows_of(folder, args.extra))
    comparisons = [c for c in (compare(summary, *QUALITY), *(compare(summary, row, args.baseline) for row in PROMISE)) if c]
    summary["comparisons"] = comparisons
    baseline_memory = args.baseline_memory_mb
    summary["baseline_peak_memory_mb"] = baseline_memory
    fresh = {}
    for run_dir in args.fresh:
        record = json.loads((Path(run_dir) / "run.json").read_text())
        fresh[Path(run_dir).name] = record["peak_memory_mb"]
    summary["fresh_peak_memory_mb"] = fresh
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, folder / "ladder.png")

    lines = ["| row | seeds | trainable / total params | MAP@3 | MAP@3 per seed | peak memory (MB) | train time (s) | "
             "median step (s) |", "|---|---|---|---:|---|---:|---:|---:|"]
    for name, row in sorted(summary["rows"].items(), key=lambda kv: kv[1]["total_params"]):
        lines.append(f"| {name} | {', '.join(map(str, row['seeds']))} | {row['trainable_params']:,} / {row['total_params']:,} | "
                     f"{fmt(row['map@3'], 3)} | {', '.join(f'{v:.3f}' for v in row['map@3_values'])} | "
                     f"{fmt(row['peak_memory_mb'], 0)} | {fmt(row['train_seconds'], 0)} | "
                     f"{fmt(row['median_step_seconds'], 2)} |")
    pooled = summary["pooled_sd"]
    lines += ["", f"Pooled seed-to-seed standard deviation of MAP@3: {pooled:.4f}." if pooled else "",
              "", "| comparison | Δ MAP@3 | 2 × s.e. | verdict |", "|---|---:|---:|---|"]
    for c in comparisons:
        lines.append(f"| {c['a']} − {c['b']} | {c['difference']:+.3f} | {c['two_se']:.3f} | {c['verdict']} |")
    if baseline_memory and fresh:
        lines += ["", f"Whole-run peak memory against {args.baseline}'s {baseline_memory:,.0f} MB (first runs of a process only):"]
        for name, peak in fresh.items():
            lines.append(f"- `{name}`: {peak:,.0f} MB, {peak / baseline_memory:.2f} of it "
                         f"({'within' if peak <= baseline_memory else 'above'}).")
    lines += ["", "![MAP@3 against peak memory and training time](ladder.png)"]
    (folder / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
