"""Does bf16 mixed precision keep fp32's quality? From the records of `loralab sweep experiments/bf16.yaml`.

For full fine-tuning and LoRA: MAP@3 and accuracy as mean ± sample s.d. over seeds in fp32 and in
bf16, the difference bf16 - fp32, and the verdict: *within noise* when the difference is under
twice its standard error sqrt(s1^2/n1 + s2^2/n2) (the rule `loralab report` uses), else *worse* or
*better*. Also each run's median step time in its record; those runs ran one after another on a
shared CPU, so the step-time ratio of one interleaved run is in benchmarks/results/training-bf16.json.
Writes `tables.md` and `summary.json` beside the records.

    python experiments/bf16_summary.py experiments/results/bf16
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

METRICS = ("map@3", "accuracy")


def summarise(folder: Path) -> dict:
    groups: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(folder.glob("*/run.json")):
        record = json.loads(path.read_text())
        if record.get("status") != "completed":
            continue
        key = (record["strategy"], record["config"]["training"].get("precision", "fp32"))
        groups.setdefault(key, []).append(record)
    rows = {}
    for (strategy, precision), records in sorted(groups.items()):
        row = {"runs": len(records), "seeds": sorted(r["config"]["training"]["seed"] for r in records),
               "median_step_seconds": statistics.median(r["median_step_seconds"] for r in records)}
        for metric in METRICS:
            values = [r["valid"][metric] for r in records]
            row[metric] = {"mean": statistics.mean(values),
                           "sd": statistics.stdev(values) if len(values) > 1 else None, "values": values}
        rows[f"{strategy} {precision}"] = row
    comparisons = {}
    for strategy in sorted({k.split()[0] for k in rows}):
        fp32, bf16 = rows.get(f"{strategy} fp32"), rows.get(f"{strategy} bf16")
        if not fp32 or not bf16:
            continue
        comparison = {}
        for metric in METRICS:
            a, b = fp32[metric], bf16[metric]
            diff = b["mean"] - a["mean"]
            if a["sd"] is None or b["sd"] is None:
                comparison[metric] = {"difference": diff, "twice_standard_error": None, "verdict": "one seed: none"}
                continue
            se = math.sqrt(a["sd"] ** 2 / fp32["runs"] + b["sd"] ** 2 / bf16["runs"])
            verdict = "within noise" if abs(diff) < 2 * se else ("better" if diff > 0 else "worse")
            comparison[metric] = {"difference": diff, "twice_standard_error": 2 * se, "verdict": verdict}
        comparisons[strategy] = comparison
    return {"rows": rows, "bf16_minus_fp32": comparisons}


def markdown(summary: dict) -> str:
    lines = ["| run | seeds | MAP@3 | accuracy | median step s |", "|---|---|---:|---:|---:|"]
    for name, row in summary["rows"].items():
        cells = [f"{row[m]['mean']:.3f}" + (f" ± {row[m]['sd']:.3f}" if row[m]["sd"] is not None else "")
                 for m in METRICS]
        lines.append(f"| {name} | {', '.join(map(str, row['seeds']))} | {cells[0]} | {cells[1]} | "
                     f"{row['median_step_seconds']:.3f} |")
    lines += ["", "| strategy | MAP@3 bf16 - fp32 (2 s.e.) | verdict | accuracy bf16 - fp32 (2 s.e.) | verdict |",
              "|---|---:|---|---:|---|"]
    for strategy, c in summary["bf16_minus_fp32"].items():
        cells = []
        for metric in METRICS:
            x = c[metric]
            se = "–" if x["twice_standard_error"] is None else f"{x['twice_standard_error']:.3f}"
            cells += [f"{x['difference']:+.3f} ({se})", x["verdict"]]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the sweep folder of experiments/bf16.yaml")
    folder = parser.parse_args().folder
    if not folder.is_dir():
        parser.error(f"{folder}: no such folder")
    summary = summarise(folder)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "tables.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
