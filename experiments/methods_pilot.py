"""Summarise the methods pilot (`experiments/methods-pilot.yaml`): does each method's training loss leave
the ln 5 plateau of five options?

    python experiments/methods_pilot.py experiments/results/methods-pilot

Writes `tables.md` beside the records: per run, the learning rate, trainable parameters, the first loss,
the mean loss of the last 20 steps and the validation MAP@3; a run has left the plateau when that mean is
below ln 5 - 0.05 (five options at chance give a loss of ln 5 = 1.609).
"""

import json
import math
import sys
from pathlib import Path

PLATEAU = math.log(5)
MARGIN = 0.05


def main(folder: str) -> None:
    rows = []
    for path in sorted(Path(folder).glob("*/run.json")):
        record = json.loads(path.read_text())
        if record.get("status") != "completed":
            continue
        losses = [float(x) for x in record["loss"]]
        tail = sum(losses[-20:]) / len(losses[-20:])
        rows.append((path.parent.name, record["hyperparameters"]["training.lr"], record["trainable_params"],
                     losses[0], tail, tail < PLATEAU - MARGIN, record["valid"]["map@3"]))
    lines = ["| run | lr | trainable | first loss | mean of last 20 | left ln 5? | MAP@3 (100 valid) |",
             "|---|---:|---:|---:|---:|---|---:|"]
    lines += [f"| {n} | {lr:g} | {p:,} | {a:.3f} | {t:.3f} | {'yes' if left else 'no'} | {m:.3f} |"
              for n, lr, p, a, t, left, m in rows]
    text = "\n".join(lines) + "\n"
    (Path(folder) / "tables.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1])
