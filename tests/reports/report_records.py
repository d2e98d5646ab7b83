"""Hand-made run records for the report tests: a small sweep, and a finder for table lines."""

from pathlib import Path

from loralab.runs.artifacts import RECORD, write_json
from loralab.runs.config import RunConfig
from loralab.sweeps.experiment import MANIFEST
from loralab.strategies import StrategyConfig
from loralab.strategies.lora import LoraConfig
from loralab.training import TrainConfig

# (folder, label, strategy, lr, alpha, seed, trainable params, MAP@3 or None when diverged)
RUNS = [
    ("full_s0", "full", "full", 5e-5, 32.0, 0, 22_000_000, 0.70),
    ("full_s1", "full", "full", 5e-5, 32.0, 1, 22_000_000, 0.71),
    ("full_s2", "full", "full", 5e-5, 32.0, 2, 22_000_000, 0.72),
    ("qv_s0", "q+v", "qv", 5e-5, 32.0, 0, 3_000_000, 0.69),
    ("qv_s1", "q+v", "qv", 5e-5, 32.0, 1, 3_000_000, 0.71),
    ("lora_a8", "alpha sweep", "lora", 1e-5, 8.0, 0, 80_000, 0.50),
    ("lora_a512", "alpha sweep", "lora", 1e-5, 512.0, 0, 80_000, 0.66),
    ("lora_a1024", "alpha sweep", "lora", 1e-5, 1024.0, 0, 80_000, None),
]


def config(strategy, lr, alpha, seed, train="/data/train.csv", valid="/data/valid.csv"):
    return RunConfig(train=train, valid=valid,
                     strategy=StrategyConfig(strategy=strategy, lora=LoraConfig(alpha=alpha)),
                     training=TrainConfig(lr=lr, seed=seed))


def write_sweep(folder: Path) -> Path:
    """The RUNS as records, plus one unfinished and one cut-short record, and the sweep's manifest."""
    for name, _, strategy, lr, alpha, seed, params, map3 in RUNS:
        c = config(strategy, lr, alpha, seed)
        record = {"status": "completed", "strategy": strategy, "config": c.to_dict(), "hyperparameters": c.flat(),
                  "trainable_params": params, "total_params": 22_000_000, "train_seconds": 10.0 + seed,
                  "peak_memory_mb": 900.0, "loss": [1.6, 1.5, 1.4, 1.3], "train_questions": 200,
                  "base_model": {"name": "minilm"}, "device": "cpu", "machine": "test"}
        if map3 is None:
            record.update(status="diverged", diverged_at_step=3, loss=[1.6, 9.0, float("nan")])
        else:
            record["valid"] = {"map@3": map3, "accuracy": map3 - 0.1, "questions": 200}
        write_json(folder / name / RECORD, record)
    write_json(folder / "unfinished" / RECORD, {"status": "running", "hyperparameters": {}})
    (folder / "broken").mkdir()
    (folder / "broken" / RECORD).write_text('{"status": "compl')  # a record cut short
    write_json(folder / MANIFEST, {"experiment": "fixture", "description": "Fixed records.",
                                   "runs": [{"folder": r[0], "labels": [r[1]]} for r in RUNS]})
    return folder


def row_line(text: str, label: str, settings: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {label} |") and settings in line]
    return line


def write_run(folder: Path, strategy: str, seed: int, params: int, valid: dict, *, train="/data/train.csv",
              task=None, metric=None, lr=1e-4) -> None:
    """One completed run's record; `task` and `metric` are left out, as older records do, when None."""
    c = config(strategy, lr, 32.0, seed, train=train, valid=train.replace("train", "valid"))
    record = {"status": "completed", "strategy": strategy, "config": c.to_dict(), "hyperparameters": c.flat(),
              "trainable_params": params, "total_params": 1000, "train_seconds": 1.0, "peak_memory_mb": 1.0,
              "loss": [1.0, 0.9], "base_model": {"name": "tiny"}, "device": "cpu", "machine": "test", "valid": valid}
    record.update({k: v for k, v in (("task", task), ("metric", metric)) if v is not None})
    record["train_questions" if task in (None, "multiple-choice") else "train_examples"] = 8
    write_json(folder / RECORD, record)
