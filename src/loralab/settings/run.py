"""The configuration of one run: model, data, task, strategy, training and the base's storage.

`RunConfig.to_dict()` is what `run.json` records and `RunConfig.from_dict()` reads it back (records
from older versions lack settings added since: they read as their defaults), so a run can be rebuilt
from its record alone. `SETTINGS` is the table of every setting in it (`loralab.settings.table`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from loralab.errors import LoralabError
from loralab.settings.head import HeadConfig
from loralab.settings.model import DEFAULT_MODEL, QuantizeConfig, base_dtype_setting, check_base_dtype
from loralab.settings.strategy import (GaloreConfig, IA3Config, LoraConfig, Strategy, StrategyConfig, SubspaceConfig,
                                      VeraConfig)
from loralab.settings.table import SettingsTable, flat_to_nested, group, setting
from loralab.settings.task import TaskConfig
from loralab.settings.training import TrainConfig
from loralab.validate import SettingError, number


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run."""

    train: str = setting("", "Training file: multiple-choice CSV (id, prompt, A..E, answer), a classification or "
                         "regression CSV/TSV (a text or pair, a label), or completion JSONL.", metavar="FILE",
                         cli_default="required")
    valid: str | None = setting(None, "Validation file, scored with the task's metrics after training (none: no "
                                "evaluation).", metavar="FILE")
    model: str = setting(DEFAULT_MODEL, "A local model folder, a packaged name (minilm, smollm2, mpnet), or a hub "
                         "name (with --online).", metavar="MODEL")
    task: TaskConfig = group(TaskConfig, "Which task the data is and where its columns are.")
    strategy: StrategyConfig = group(StrategyConfig, "What trains, and how.")
    training: TrainConfig = group(TrainConfig, "Optimisation settings.")
    quantize: QuantizeConfig = group(QuantizeConfig, "How the frozen base weights are stored (4-bit NF4 under "
                                     "lora: QLoRA).")
    base_dtype: str = base_dtype_setting()
    head: HeadConfig = group(HeadConfig, "How the task head starts.")
    train_limit: int | None = setting(None, "Use only the first N training examples.", metavar="N")
    valid_limit: int | None = setting(None, "Use only the first N validation examples.", metavar="N")
    train_sample_seed: int | None = setting(None, "With --train-limit: draw the N training examples at random with "
                                            "this seed (file order kept) instead of taking the first N.")
    device: str = setting("auto", "auto (CUDA when present), cpu or cuda[:N].", identity=False, metavar="DEVICE")
    offline: bool = setting(True, "Never reach a model hub (--online: allow downloading the model).",
                            flag="--online", negate=True, compared=False)
    trust_remote_code: bool = setting(False, "Allow a hub model's own Python code to run (off: only transformers' "
                                      "code runs).", compared=False)

    def __post_init__(self):
        for name in ("train_limit", "valid_limit"):
            number(name, getattr(self, name), integer=True, low=1, optional=True)
        number("train_sample_seed", self.train_sample_seed, integer=True, low=0, high=2**63 - 1, optional=True)
        for name in ("train", "model"):
            if not isinstance(getattr(self, name), str):
                raise SettingError(name, getattr(self, name), "a path or name")
        if self.valid is not None and not isinstance(self.valid, str):
            raise SettingError("valid", self.valid, "a path")
        if self.quantize.enabled and self.strategy.strategy in (Strategy.FULL, Strategy.SUBSPACE, Strategy.GALORE):
            raise SettingError("quantize.method", self.quantize.method,
                               f"none with strategy {self.strategy.strategy.value}, which trains every base weight "
                               "(a quantized weight cannot train; use lora for QLoRA, or attention / qv)")
        if self.quantize.enabled and self.strategy.lora.init != "default":
            raise SettingError("strategy.lora.init", self.strategy.lora.init, "default with a quantized base (PiSSA "
                               "and OLoRA factor the float weight; peft refuses them on a quantized one)")
        check_base_dtype(self.base_dtype, self.strategy.strategy.value, self.quantize)
        if not isinstance(self.device, str) or not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            raise LoralabError(f"invalid device={self.device!r}: expected auto, cpu or cuda[:N]")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["strategy"]["strategy"] = self.strategy.strategy.value
        for name in ("lora", "vera", "galore"):
            out["strategy"][name]["targets"] = list(out["strategy"][name]["targets"])
        out["strategy"]["ia3"] = {k: list(v) for k, v in out["strategy"]["ia3"].items()}
        out["strategy"]["subspace"] = self.strategy.subspace.to_dict()
        out["task"]["columns"] = list(self.task.columns)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        data = dict(data)
        try:
            strategy = dict(data.pop("strategy", {}))
            lora = LoraConfig(**strategy.pop("lora", {}))
            subspace_settings = dict(strategy.pop("subspace", {}))
            if subspace_settings.pop("direct", []):  # records before 0.2 kept the head here; it was always empty
                raise LoralabError("strategy.subspace.direct is no longer a setting; the head trains when train_head is set")
            subspace = SubspaceConfig(**subspace_settings)
            # Records from before VeRA, IA3 and GaLore lack their settings: the defaults.
            methods = {name: kind(**strategy.pop(name, {}))
                       for name, kind in (("vera", VeraConfig), ("ia3", IA3Config), ("galore", GaloreConfig))}
            strategy_config = StrategyConfig(strategy=Strategy.parse(strategy.pop("strategy", "full")), lora=lora,
                                             subspace=subspace, **methods, **strategy)
            training = TrainConfig(**data.pop("training", {}))
            task = TaskConfig(**data.pop("task", {}))  # records from before tasks existed: auto, i.e. their own
            quantize = QuantizeConfig(**data.pop("quantize", {}))  # records from before quantization: none
            # Records from before head starts read as today's defaults; what their run did is the record's
            # `head_start` (absent: nothing), which evaluation and resume follow (`loralab.models.head_start`).
            head = HeadConfig(**data.pop("head", {}))
            return cls(strategy=strategy_config, training=training, task=task, quantize=quantize, head=head, **data)
        except (TypeError, AttributeError) as e:
            raise LoralabError(f"invalid run configuration: {e}") from None

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> "RunConfig":
        """A configuration from dotted paths (`{"training.lr": 1e-3}`); the rest keep their defaults."""
        return cls.from_dict(flat_to_nested(values))

    def replace(self, values: dict[str, Any]) -> "RunConfig":
        """This configuration with some settings changed, each named by its key or dotted path."""
        flat = self.flat()
        for name, value in values.items():
            path = SETTINGS.path(name)
            if path is None:
                raise LoralabError(f"unknown setting {name!r}")
            if SETTINGS.by_path[path].kind == "float" and type(value) is int:
                value = float(value)  # as the field holds it, so records and folder names read alike
            flat[path] = value
        return RunConfig.from_flat(flat)

    def flat(self) -> dict[str, Any]:
        """Every setting as one flat mapping (`strategy.lora.alpha`, `training.lr`, ...)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{prefix}{key}.", inner)
            else:
                out[prefix[:-1]] = value

        walk("", self.to_dict())
        return out


SETTINGS = SettingsTable.of(RunConfig)


def identity(config: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """A configuration as compared for reuse (resume): only the settings that are part of what a run is.

    A record from an older loralab lacks settings added since: they read as their defaults, except the
    head start, which read as what those runs did (bias 0, no untrained module detected), so that a sweep
    never takes a run trained the old way for one asked the new way."""
    if not isinstance(config, RunConfig):
        if isinstance(config, dict) and "head" not in config:
            config = {**config, "head": {"regression": "zero", "untrained": False}}
        try:
            config = RunConfig.from_dict(config)
        except (LoralabError, TypeError, ValueError):
            pass
    data = config.to_dict() if isinstance(config, RunConfig) else dict(config)
    outside = {s.path for s in SETTINGS if not s.identity}

    def keep(prefix: str, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        return {k: keep(f"{prefix}{k}.", v) for k, v in node.items() if f"{prefix}{k}" not in outside}

    return json.loads(json.dumps(keep("", data)))  # tuples and lists compare alike
