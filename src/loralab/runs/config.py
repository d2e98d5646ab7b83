"""The configuration of one run: model, data, strategy and training, as frozen dataclasses.

`RunConfig.to_dict()` is what `run.json` records and `RunConfig.from_dict()` reads it back, so a
run can be rebuilt from its record alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from loralab.errors import LoralabError
from loralab.validate import SettingError, number
from loralab.models import DEFAULT_MODEL
from loralab.models.quantize import QuantizeConfig
from loralab.strategies import Strategy, StrategyConfig
from loralab.strategies.lora import LoraConfig
from loralab.strategies.subspace import SubspaceConfig
from loralab.tasks import TaskConfig
from loralab.training import TrainConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run."""

    train: str
    """Path of the training file (CSV, or TSV for classification and regression)."""
    valid: str | None = None
    """Path of the validation file (None: no evaluation)."""
    model: str = DEFAULT_MODEL
    """A local model folder, 'minilm' for the packaged MiniLM, or a hub name."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """Which task the data is (multiple choice, classification, regression) and where its columns are."""
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    """What trains, and how."""
    training: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation settings."""
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    """How the frozen base weights are stored (4-bit NF4 under lora: QLoRA)."""
    train_limit: int | None = None
    """Use only the first N training examples."""
    valid_limit: int | None = None
    """Use only the first N validation examples."""
    train_sample_seed: int | None = None
    """With train_limit: take N training examples drawn at random with this seed (file order kept)
    instead of the first N; for files sorted by source or genre (CoLA, the STS Benchmark)."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu' or 'cuda[:N]'."""
    offline: bool = True
    """Never reach a model hub."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run (off: only transformers' code runs)."""

    def __post_init__(self):
        for name in ("train_limit", "valid_limit"):
            number(name, getattr(self, name), integer=True, low=1, optional=True)
        number("train_sample_seed", self.train_sample_seed, integer=True, low=0, high=2**63 - 1, optional=True)
        for name in ("train", "model"):
            if not isinstance(getattr(self, name), str):
                raise SettingError(name, getattr(self, name), "a path or name")
        if self.valid is not None and not isinstance(self.valid, str):
            raise SettingError("valid", self.valid, "a path")
        if self.quantize.enabled and self.strategy.strategy in (Strategy.FULL, Strategy.SUBSPACE):
            raise SettingError("quantize.method", self.quantize.method,
                               f"none with strategy {self.strategy.strategy.value}, which trains every base weight "
                               "(a quantized weight cannot train; use lora for QLoRA, or attention / qv)")
        if not isinstance(self.device, str) or not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            raise LoralabError(f"invalid device={self.device!r}: expected auto, cpu or cuda[:N]")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["strategy"]["strategy"] = self.strategy.strategy.value
        out["strategy"]["lora"]["targets"] = list(self.strategy.lora.targets)
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
            subspace = SubspaceConfig(**{"dim": 1000, **subspace_settings})
            strategy_config = StrategyConfig(strategy=Strategy.parse(strategy.pop("strategy", "full")), lora=lora,
                                             subspace=subspace, **strategy)
            training = TrainConfig(**data.pop("training", {}))
            task = TaskConfig(**data.pop("task", {}))  # records from before tasks existed: auto, i.e. their own
            quantize = QuantizeConfig(**data.pop("quantize", {}))  # records from before quantization: none
            return cls(strategy=strategy_config, training=training, task=task, quantize=quantize, **data)
        except (TypeError, AttributeError) as e:
            raise LoralabError(f"invalid run configuration: {e}") from None

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
