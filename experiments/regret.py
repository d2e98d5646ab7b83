"""The regret of a recommend search against the exhaustive grid of the same space (`regret.sh`).

Reads FOLDER/grid/grid.json (every setting trained on all the data, seed 0) and
FOLDER/search/recommendation.json (the search's pick, its final run and its spending), trains seeds 1
and 2 of the grid's best row and of the pick's row (the pick is always a row of the grid: the search
draws only from the finite space), and writes FOLDER/regret.json and FOLDER/regret.md:

- regret: the best row's mean over 3 seeds less the pick's row's mean over 3 seeds, and whether it is
  within noise (under twice its standard error, as the reports judge rows);
- compute: the search's total against the grid's total, both on the CPU clock of their ledgers.

    python experiments/regret.py experiments/results/regret/sst2 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
from pathlib import Path

import torch

from loralab import api
from loralab.recommendation.space import describe
from loralab.reports.rows import higher_is_better
from loralab.runs.artifacts import RECORD, read_json, write_json
from loralab.runs.config import RunConfig

SEEDS = (1, 2)


def _row(grid: dict, candidate: str, settings: dict) -> dict:
    for row in grid["rows"]:
        if row["candidate"] == candidate and row["settings"] == settings:
            return row
    raise SystemExit(f"the search's pick {candidate} {settings} is not a row of the grid: were both run on one space?")


def _seeds(folder: Path, row: dict, metric: str) -> list[float]:
    """Seed 0 (the grid's run) and seeds 1, 2 trained here (read back when finished)."""
    record = read_json(folder / "grid" / row["folder"] / RECORD)
    values = [record["valid"][metric]]
    config = RunConfig.from_dict(record["config"])
    for seed in SEEDS:
        out = folder / "seeds" / row["folder"].removeprefix("grid/") / f"seed-{seed}"
        done = out / RECORD
        if not (done.exists() and read_json(done).get("status") == "completed"):
            api.train(dataclasses.replace(config, training=dataclasses.replace(config.training, seed=seed)), out,
                      progress=False)
        values.append(read_json(done)["valid"][metric])
    return values


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = json.loads((args.folder / "grid" / "grid.json").read_text())
    search = json.loads((args.folder / "search" / "recommendation.json").read_text())
    metric, best = grid["metric"], grid["best"]
    winner = search.get("winner")
    if winner is None:
        raise SystemExit(f"{args.folder / 'search'}: the search picked nothing ({search['stopped']})")
    pick = _row(grid, winner["candidate"], winner["settings"])
    rows = {"best": best, "pick": pick}
    scores = {name: _seeds(args.folder, row, metric) for name, row in rows.items()}
    mean = {name: statistics.mean(v) for name, v in scores.items()}
    sd = {name: statistics.stdev(v) for name, v in scores.items()}
    sign = 1 if higher_is_better(metric) else -1
    regret = sign * (mean["best"] - mean["pick"])
    se = math.sqrt(sum(s ** 2 / len(scores[n]) for n, s in sd.items())) if pick["folder"] != best["folder"] else 0.0
    grid_spent, search_spent = grid["spent_seconds"]["total"], search["spent_seconds"]["total"]
    result = {
        "metric": metric, "clock": grid["budget_clock"],
        "grid": {"settings": len(grid["rows"]), "spent_seconds": grid_spent,
                 "best": {"candidate": best["candidate"], "settings": best["settings"], "seed_0": best[metric]}},
        "search": {"spent_seconds": search_spent, "budget_seconds": search["budget_seconds"],
                   "pilots": len(search["pilots"]), "pick": {"candidate": pick["candidate"], "settings": pick["settings"],
                                                              "grid_rank": grid["rows"].index(pick) + 1,
                                                              "final_run": (search.get("final") or {}).get(metric)}},
        "seeds": {name: {"values": v, "mean": mean[name], "sd": sd[name]} for name, v in scores.items()},
        "regret": regret, "standard_error": se, "within_noise": regret <= 2 * se,
        "compute_ratio": search_spent / grid_spent,
    }
    write_json(args.folder / "regret.json", result)
    line = lambda n: f"{mean[n]:.4f} ± {sd[n]:.4f} ({', '.join(f'{x:.4f}' for x in scores[n])})"  # noqa: E731
    text = (f"# Regret of `recommend` on {args.folder.name}\n\n"
            f"The grid trained all {len(grid['rows'])} settings of the space on all the data ({grid_spent:.0f} s, "
            f"{grid['budget_clock']} clock); the search spent {search_spent:.0f} s "
            f"(**{result['compute_ratio']:.2f} of the grid**) on {len(search['pilots'])} pilots and its final run.\n\n"
            f"| row | candidate | settings | grid rank | {metric}, seeds 0-2 |\n|---|---|---|---|---|\n"
            f"| grid's best | {best['candidate']} | {describe(best['settings'])} | 1 | {line('best')} |\n"
            f"| search's pick | {pick['candidate']} | {describe(pick['settings'])} | {result['search']['pick']['grid_rank']} | "
            f"{line('pick')} |\n\n"
            f"Regret {regret:+.4f} (standard error {se:.4f}): "
            f"**{'within noise' if result['within_noise'] else 'beyond noise'}** (within noise: under twice the standard "
            f"error). The search's own final run scored {_num(result['search']['pick']['final_run'])}.\n")
    (args.folder / "regret.md").write_text(text)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
