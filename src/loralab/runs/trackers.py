"""Experiment trackers a run reports to as it trains: TensorBoard, MLflow, Weights & Biases (`--log-to`).

Each hears the run's settings when it starts, every optimizer step's loss, learning rate and tokens
per second and every evaluation during training (through `runs/during.py`, the run's step hook), and
at the end the final metrics and the run's record (`run.json`) as an artifact. None changes what the
run computes. Each is an optional extra; asking for one that is not installed stops the run before
anything is written, naming the extra. TensorBoard writes `tensorboard/` in the run folder; MLflow a
store in `mlruns/` there (an SQLite database and the artifacts) unless `--mlflow-uri` names a server; W&B runs offline, in `wandb/` there.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from loralab.errors import LoralabError
from loralab.settings import RunConfig
from loralab.training.interface import Step

EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoard:
    def __init__(self, config: RunConfig, out_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
        self.writer.add_text("settings", "\n".join(f"    {k} = {v!r}" for k, v in config.flat().items()))

    def step(self, step: Step) -> None:
        self.writer.add_scalar("train/loss", step.loss, step.step)
        self.writer.add_scalar("train/lr", step.lr, step.step)
        self.writer.add_scalar("train/tokens_per_second", step.tokens_per_second, step.step)

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        for name, value in _numbers(metrics).items():
            self.writer.add_scalar(f"eval/{name}", value, step)

    def finish(self, record: dict[str, Any], record_path: Path) -> None:
        for name, value in _numbers(record.get("valid", {})).items():
            self.writer.add_scalar(f"valid/{name}", value, record.get("steps", 0))
        self.writer.add_text("record", "    " + record_path.read_text().replace("\n", "\n    "))
        self.writer.close()


class MLflow:
    def __init__(self, config: RunConfig, out_dir: Path):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        store = (out_dir / "mlruns").absolute()
        artifacts = None
        if config.training.mlflow_uri:
            uri = config.training.mlflow_uri
        else:  # MLflow's own database in a folder of the run's (its plain-file store is being retired)
            store.mkdir(parents=True, exist_ok=True)
            uri, artifacts = f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name("loralab")
        experiment_id = (experiment.experiment_id if experiment
                         else self.client.create_experiment("loralab", artifact_location=artifacts))
        self.run_id = self.client.create_run(experiment_id, run_name=out_dir.absolute().name).info.run_id
        params = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in config.flat().items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        # MLflow's names take no '@': map@3 is logged as map_at_3.
        self.client.log_batch(self.run_id, metrics=[Metric(k.replace("@", "_at_"), v, now, step)
                                                    for k, v in values.items()])

    def step(self, step: Step) -> None:
        self._log({"loss": step.loss, "lr": step.lr, "tokens_per_second": step.tokens_per_second}, step.step)

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        self._log({f"eval_{k}": v for k, v in _numbers(metrics).items()}, step)

    def finish(self, record: dict[str, Any], record_path: Path) -> None:
        final = {f"valid_{k}": v for k, v in _numbers(record.get("valid", {})).items()}
        final.update({k: float(record[k]) for k in ("train_seconds", "peak_memory_mb", "tokens_per_second")
                      if isinstance(record.get(k), (int, float))})
        self._log(final, int(record.get("steps", 0)))
        self.client.log_artifact(self.run_id, str(record_path))
        self.client.set_terminated(self.run_id, "FINISHED" if record.get("status") == "completed" else "FAILED")


class WandB:
    def __init__(self, config: RunConfig, out_dir: Path):
        import wandb

        self.run = wandb.init(mode="offline", dir=str(out_dir), project="loralab", name=out_dir.absolute().name,
                              config=config.flat(), reinit="create_new")

    def step(self, step: Step) -> None:
        self.run.log({"loss": step.loss, "lr": step.lr, "tokens_per_second": step.tokens_per_second}, step=step.step)

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        self.run.log({f"eval/{k}": v for k, v in _numbers(metrics).items()}, step=step)

    def finish(self, record: dict[str, Any], record_path: Path) -> None:
        self.run.summary.update({f"valid/{k}": v for k, v in _numbers(record.get("valid", {})).items()})
        self.run.save(str(record_path), base_path=str(record_path.parent), policy="now")
        self.run.finish(exit_code=0 if record.get("status") == "completed" else 1)


KINDS = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}


def check_trackers(names: tuple[str, ...]) -> None:
    """Refuse, in one line naming the extra, a tracker whose package is not installed."""
    for name in names:
        module = "torch.utils.tensorboard" if name == "tensorboard" else name
        if importlib.util.find_spec(EXTRAS[name]) is None or importlib.util.find_spec(module) is None:
            raise LoralabError(f"--log-to {name} needs the '{EXTRAS[name]}' extra: pip install 'loralab[{EXTRAS[name]}]'")


def open_trackers(config: RunConfig, out_dir: Path) -> list[Any]:
    """The trackers `config.training.log_to` names, each told the run's settings."""
    check_trackers(config.training.log_to)
    return [KINDS[name](config, Path(out_dir)) for name in config.training.log_to]
