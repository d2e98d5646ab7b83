"""Instruction tuning SmolLM2-135M-Instruct with LoRA on chats built from the science exam.

Each chat asks a science-exam question with its options and answers with the correct letter and
the option's text ("The answer is B: ..."). The data is built at run time from
../shared/data/science-exam (training questions 2001-2300, so none of the multiple-choice runs'
first 2,000; valid.csv's first 100 for evaluation) and is not committed. The script records the
base model's and the trained adapter's completion loss and perplexity on the held-out chats, and
the greedy answers of both to a few held-out questions.

    python experiments/instruction_tuning.py --out experiments/results/instruction-tuning --threads 1

Resumable: a finished step (base evaluation, training, generations) is not redone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCIENCE = ROOT.parent / "shared" / "data" / "science-exam"
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine  # noqa: E402

from loralab.tasks.multiple_choice import read_questions  # noqa: E402

ASK = "{prompt}\n{options}\nWhich option is correct? Answer with its letter and text."


def chats(path: Path, start: int, count: int) -> list[dict]:
    questions = read_questions(path)[start:start + count]
    out = []
    for q in questions:
        options = "\n".join(f"{letter}. {text}" for letter, text in zip(q.letters, q.options))
        answer = f"The answer is {q.answer_letter}: {q.options[q.answer]}"
        out.append({"id": q.id, "messages": [{"role": "user", "content": ASK.format(prompt=q.prompt, options=options)},
                                             {"role": "assistant", "content": answer}]})
    return out


def loralab(*args: str, threads: int) -> str:
    command = [sys.executable, "-m", "loralab.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def metrics(text: str) -> dict:
    values = {}
    for line in text.splitlines():
        name, _, value = line.strip().rpartition(" ")
        if name.strip() in ("perplexity", "loss", "examples"):
            values[name.strip()] = float(value)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/instruction-tuning")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-count", type=int, default=300)
    parser.add_argument("--valid-count", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()
    out = Path(args.out)
    data = out / "data"  # built from ../shared/data; not committed
    data.mkdir(parents=True, exist_ok=True)
    train, valid = data / "train.jsonl", data / "valid.jsonl"
    for path, rows in ((train, chats(SCIENCE / "train.csv", 2000, args.train_count)),
                       (valid, chats(SCIENCE / "valid.csv", 0, args.valid_count))):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["machine"] = machine(torch.device("cpu"))
    results["settings"] = {"model": "smollm2", "strategy": "lora", "targets": "all-linear", "r": 8, "alpha": 16,
                           "lr": args.lr, "epochs": args.epochs, "batch_size": 8, "train_chats": args.train_count,
                           "valid_chats": args.valid_count, "train_questions": "science-exam train.csv rows 2001-"
                           f"{2000 + args.train_count}", "valid_questions": f"valid.csv rows 1-{args.valid_count}"}
    if "base" not in results:
        results["base"] = metrics(loralab("evaluate", "--model", "smollm2", "--data", str(valid), "--quiet",
                                          threads=args.threads))
        results_path.write_text(json.dumps(results, indent=2))
    run = out / "run"
    if not (run / "run.json").exists() or json.loads((run / "run.json").read_text()).get("status") != "completed":
        loralab("train", "--model", "smollm2", "--train", str(train), "--valid", str(valid), "--strategy", "lora",
                "--lora-targets", "all-linear", "--lora-r", "8", "--lora-alpha", "16", "--lr", str(args.lr),
                "--epochs", str(args.epochs), "--batch-size", "8", "--max-length", "384", "--out", str(run), "--quiet",
                "--threads", str(args.threads), threads=args.threads)
    record = json.loads((run / "run.json").read_text())
    results["trained"] = {k: record["valid"][k] for k in ("perplexity", "loss", "examples", "tokens")}
    results["train_seconds"], results["steps"] = record["train_seconds"], record["steps"]
    results["train_loss_first_last"] = [record["loss"][0], record["loss"][-1]]
    results_path.write_text(json.dumps(results, indent=2))

    if "generations" not in results:
        rows = [json.loads(line) for line in valid.read_text().splitlines()[:4]]
        prompts = [row["messages"][0]["content"] for row in rows]
        flags = ["--max-new-tokens", "48", "--chat", "--quiet"]
        before = loralab("generate", "--model", "smollm2", *sum((["--prompt", p] for p in prompts), []), *flags,
                         threads=args.threads)
        after = loralab("generate", "--run", str(run), *sum((["--prompt", p] for p in prompts), []), *flags,
                        threads=args.threads)
        completions = lambda text: [part.split("--- completion\n", 1)[1].strip()
                                    for part in text.split("--- prompt\n")[1:]]
        results["generations"] = [{"prompt": p, "expected": row["messages"][1]["content"], "before": b, "after": a}
                                  for p, row, b, a in zip(prompts, rows, completions(before), completions(after))]
        results_path.write_text(json.dumps(results, indent=2))
    lines = ["# Instruction tuning SmolLM2-135M-Instruct (LoRA all-linear, r 8) on science-exam chats", "",
             f"Settings: {json.dumps(results['settings'])}", "",
             "| model | held-out loss per token | perplexity |", "|---|---|---|",
             f"| base (zero-shot) | {results['base']['loss']:.4f} | {results['base']['perplexity']:.2f} |",
             f"| LoRA, {results['steps']} steps ({results['train_seconds']:.0f} s) | {results['trained']['loss']:.4f} "
             f"| {results['trained']['perplexity']:.2f} |", "", "## Greedy answers before and after", ""]
    for g in results["generations"]:
        lines += [f"**Question.** {g['prompt']}", "", f"- expected: {g['expected']}", f"- before: {g['before']}",
                  f"- after: {g['after']}", ""]
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
