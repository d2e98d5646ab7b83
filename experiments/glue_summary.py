"""The LoRA paper's GLUE comparison, from the records of `loralab sweep experiments/glue.yaml`.

For each task, the metric GLUE reports for it (Hu et al. 2021, Table 2: MRPC and RTE and SST-2
accuracy, CoLA Matthews correlation, STS-B Pearson), as mean ± sample s.d. over seeds, for full
fine-tuning, LoRA on q,v and LoRA on every linear layer; each LoRA row's difference from full is
*within noise* when under twice its standard error sqrt(s1^2/n1 + s2^2/n2). The average over the
tasks is the paper's summary number. Writes `tables.md` and `summary.json` beside the records.

    python experiments/glue_summary.py experiments/results/glue
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

TASKS = {  # data-set folder -> (name, the metric GLUE reports)
    "SST-2": ("SST-2", "accuracy"),
    "MRPC": ("MRPC", "accuracy"),
    "RTE": ("RTE", "accuracy"),
    "CoLA": ("CoLA", "mcc"),
    "STS-B": ("STS-B", "pearson"),
}
PAPER = {  # RoBERTa-base, Hu et al. 2021 Table 2: (full fine-tuning, LoRA)
    "SST-2": (94.8, 95.1), "MRPC": (90.2, 89.7), "RTE": (78.7, 86.6), "CoLA": (63.6, 63.4), "STS-B": (91.2, 91.5),
}


def variant(record: dict) -> str:
    strategy = record["config"]["strategy"]
    if strategy["strategy"] == "full":
        return "full"
    targets = strategy["lora"]["targets"]
    return "lora all-linear" if targets == ["all-linear"] else f"lora {','.join(targets)}"


def summarise(folder: Path) -> dict:
    values: dict[tuple[str, str], list[float]] = {}
    extra: dict[tuple[str, str], dict[str, list[float]]] = {}
    for path in sorted(folder.glob("*/run.json")):
        record = json.loads(path.read_text())
        if record.get("status") != "completed" or "valid" not in record:
            continue
        task = Path(record["config"]["train"]).parent.name
        if task not in TASKS:
            continue
        key = (task, variant(record))
        values.setdefault(key, []).append(record["valid"][TASKS[task][1]])
        for name, value in record["valid"].items():
            if isinstance(value, float):
                extra.setdefault(key, {}).setdefault(name, []).append(value)
    rows = {}
    for (task, name), vals in values.items():
        rows.setdefault(task, {})[name] = {
            "metric": TASKS[task][1], "values": vals, "mean": statistics.fmean(vals),
            "sd": statistics.stdev(vals) if len(vals) > 1 else None, "seeds": len(vals),
            "all_metrics": {k: statistics.fmean(v) for k, v in extra[(task, name)].items()},
        }
    for task, variants in rows.items():
        full = variants.get("full")
        for name, row in variants.items():
            if name == "full" or full is None:
                continue
            diff = row["mean"] - full["mean"]
            if row["sd"] is None or full["sd"] is None:
                row["verdict"] = "one seed: no verdict"
                continue
            se = math.sqrt(row["sd"] ** 2 / row["seeds"] + full["sd"] ** 2 / full["seeds"])
            row["difference"] = diff
            row["verdict"] = "within noise" if abs(diff) < 2 * se else ("better" if diff > 0 else "worse")
    return rows


def markdown(rows: dict) -> str:
    names = ["full", "lora query,value", "lora all-linear"]
    lines = ["# GLUE: full fine-tuning vs LoRA, MiniLM-L6 on a CPU", "",
             "Each cell: the task's GLUE metric x 100, mean ± s.d. over seeds (n); LoRA rows: the difference "
             "from full and its verdict (within noise: under twice the standard error of the difference).", "",
             "| task (metric) | " + " | ".join(names) + " | paper full / LoRA (RoBERTa-base) |",
             "|---|" + "---:|" * (len(names) + 1)]
    averages = {name: [] for name in names}
    for task in TASKS:
        if task not in rows:
            lines.append(f"| {task} | " + " | ".join("not run" for _ in names) + " | |")
            continue
        cells = []
        for name in names:
            row = rows[task].get(name)
            if row is None:
                cells.append("not run")
                continue
            sd = f" ± {100 * row['sd']:.1f}" if row["sd"] is not None else ""
            cell = f"{100 * row['mean']:.1f}{sd} ({row['seeds']})"
            if "difference" in row:
                cell += f"; {100 * row['difference']:+.1f}, {row['verdict']}"
            elif "verdict" in row:
                cell += f"; {row['verdict']}"
            cells.append(cell)
            averages[name].append(row["mean"])
        paper = PAPER[task]
        lines.append(f"| {task} ({TASKS[task][1]}) | " + " | ".join(cells) + f" | {paper[0]} / {paper[1]} |")
    complete = all(len(v) == len(TASKS) for v in averages.values())
    if complete:
        lines.append("| **average** | " + " | ".join(f"**{100 * statistics.fmean(v):.1f}**" for v in averages.values())
                     + " | 87.2 / 86.4 (all eight GLUE tasks) |")
    else:
        lines.append("| average | not every task finished | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    rows = summarise(args.folder)
    text = markdown(rows)
    (args.folder / "tables.md").write_text(text)
    (args.folder / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
