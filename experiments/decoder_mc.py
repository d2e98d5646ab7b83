"""Score the decoder multiple-choice sweep: zero-shot against trained, letter against likelihood scoring.

After `loralab sweep experiments/decoder-mc.yaml --out experiments/results/decoder-mc`, this scores
all 500 validation questions with the untrained SmolLM2 (zero-shot) and with each trained run, each
by letter and by option log-likelihood, keeps every question's average precision, and compares
pairs of models with a paired bootstrap over the questions (the noise of a 500-question sample).

    python experiments/decoder_mc.py experiments/results/decoder-mc --threads 1

Resumable: each (model, scoring) pair is saved in scores.json as soon as it is done.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine  # noqa: E402

from loralab.metrics import map_at_k  # noqa: E402
from loralab.models import pad_token_id  # noqa: E402
from loralab.runs import load_base, load_run  # noqa: E402
from loralab.tasks import TaskConfig, get_task  # noqa: E402
from loralab.training import score  # noqa: E402

VALID = ROOT.parent / "shared" / "data" / "science-exam" / "valid.csv"


def per_question(loaded, scoring: str) -> list[float]:
    task = get_task("multiple-choice", scoring)
    questions = task.read(VALID, TaskConfig())
    items = task.encode(questions, loaded.tokenizer, 256)
    outputs = score(loaded.model, items, task=task, pad_id=pad_token_id(loaded.tokenizer), batch_size=16,
                    device="cpu", progress=True)
    return [map_at_k([o], [q.answer]) for o, q in zip(outputs, questions)]


def paired(a: list[float], b: list[float], samples: int = 2000) -> dict:
    """Mean of a - b with a 95% paired-bootstrap interval over questions."""
    a_, b_ = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    index = torch.randint(0, len(a), (samples, len(a)), generator=g)
    diffs = (a_[index] - b_[index]).mean(1)
    low, high = torch.quantile(diffs, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    diff = float((a_ - b_).mean())
    return {"difference": round(diff, 4), "ci95": [round(low, 4), round(high, 4)],
            "beyond_noise": bool(low > 0 or high < 0)}


def interval(a: list[float], samples: int = 2000) -> list[float]:
    """95% bootstrap interval of a mean over questions."""
    a_ = torch.tensor(a, dtype=torch.float64)
    index = torch.randint(0, len(a), (samples, len(a)), generator=torch.Generator().manual_seed(0))
    low, high = torch.quantile(a_[index].mean(1), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return [round(low, 4), round(high, 4)]


def best_constant_order() -> tuple[float, str]:
    """MAP@3 of the best fixed letter order for every question, chosen with hindsight on valid: the most a
    letter prior alone can score (uniform guessing scores (1 + 1/2 + 1/3) / 5 = 0.367)."""
    answers = [q.answer for q in get_task("multiple-choice", "letter").read(VALID, TaskConfig())]
    best = max((sum(map_at_k([[3.0 if c == o[0] else 2.0 if c == o[1] else 1.0 if c == o[2] else 0.0
                                 for c in range(5)]], [a]) for a in answers) / len(answers), o)
               for o in itertools.permutations(range(5), 3))
    return round(best[0], 4), "".join("ABCDE"[i] for i in best[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    path = folder / "scores.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    models = {"zero-shot": None}
    for run in sorted(folder.glob("*/run.json")):
        record = json.loads(run.read_text())
        if record.get("status") == "completed":
            models[record["strategy"]] = run.parent
    for name, run_dir in models.items():
        loaded = None
        for scoring in ("letter", "likelihood"):
            key = f"{name}/{scoring}"
            if key in saved:
                continue
            if loaded is None:
                loaded = load_base("smollm2", VALID, device="cpu") if run_dir is None else load_run(run_dir, device="cpu")
            saved[key] = per_question(loaded, scoring)
            path.write_text(json.dumps(saved))
            print(f"{key}: MAP@3 {sum(saved[key]) / len(saved[key]):.4f}", flush=True)

    table = {key: round(sum(v) / len(v), 4) for key, v in saved.items()}
    comparisons = {}
    for name in models:
        if name != "zero-shot" and f"{name}/letter" in saved:
            comparisons[f"{name} - zero-shot (letter)"] = paired(saved[f"{name}/letter"], saved["zero-shot/letter"])
            comparisons[f"{name}: letter - likelihood"] = paired(saved[f"{name}/letter"], saved[f"{name}/likelihood"])
    constant, order = best_constant_order()
    summary = {"machine": machine(torch.device("cpu")), "questions": len(next(iter(saved.values()))), "map@3": table,
               "map@3_ci95": {key: interval(v) for key, v in saved.items()}, "chance_uniform": round(11 / 30, 4),
               "best_constant_letter_order": {"order": order, "map@3": constant}, "comparisons": comparisons}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    ci = summary["map@3_ci95"]
    cell = lambda key: f"{table[key]:.4f} [{ci[key][0]:.3f}, {ci[key][1]:.3f}]" if key in table else "–"
    lines = ["| model | letter MAP@3 [95% interval] | likelihood MAP@3 [95% interval] |", "|---|---|---|"]
    for name in models:
        lines.append(f"| {name} | {cell(f'{name}/letter')} | {cell(f'{name}/likelihood')} |")
    lines += ["", f"Uniform guessing scores {11 / 30:.4f}; the best fixed letter order, chosen with hindsight on "
              f"these questions ({order}), scores {constant:.4f}: the most a letter prior alone can give."]
    lines += ["", "| comparison (paired bootstrap over 500 questions) | difference | 95% interval | beyond noise |",
              "|---|---|---|---|"]
    for name, c in comparisons.items():
        lines.append(f"| {name} | {c['difference']:+.4f} | [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] | "
                     f"{'yes' if c['beyond_noise'] else 'no'} |")
    (folder / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
