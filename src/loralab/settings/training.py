"""How a run optimises: epochs, learning rate, batches, precision and the guards around them."""

from __future__ import annotations

from dataclasses import dataclass

from loralab.settings.table import setting
from loralab.validate import SettingError, number

PRECISIONS = ("fp32", "bf16")
KEEPS = ("auto", "best", "last")
TRACKERS = ("tensorboard", "mlflow", "wandb")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run."""

    epochs: float = setting(1.0, "Passes over the training set (fractions allowed).")
    lr: float = setting(2e-5, "Peak learning rate of AdamW.")
    batch_size: int = setting(8, "Examples (questions) per forward pass.", folder="bs")
    grad_accum: int = setting(1, "Forward passes per optimizer step.")
    warmup_ratio: float = setting(0.1, "Share of the steps spent warming the learning rate up linearly from zero.")
    weight_decay: float = setting(0.01, "AdamW weight decay, applied to matrices only (not biases or norms).")
    max_grad_norm: float = setting(1.0, "Clip the gradient's global norm to this (0: no clipping).")
    max_length: int = setting(256, "Tokens per example (per prompt and option); longer ones are truncated, "
                              "prompt first.", folder="len")
    seed: int = setting(0, "Seeds data order, dropout and the new head's initialisation.", compared=False)
    max_steps: int | None = setting(None, "Stop after this many optimizer steps (none: run all epochs).")
    eval_batch_size: int = setting(32, "Examples per forward pass when evaluating.", compared=False)
    group_by_length: bool = setting(True, "Batch examples of similar length together to cut padding.")
    theta_lr: float | None = setting(None, "Subspace: peak learning rate of theta (none: --lr); the head (unless "
                                     "--head-lr) and SAID scales keep --lr.")
    head_lr: float | None = setting(None, "Peak learning rate of the task head (and any untrained module training "
                                    "with it); none: --lr.")
    packed: bool = setting(True, "Compute on real tokens only where loralab.models.packed supports the model "
                           "(--no-packing: the model's own padded forward).", flag="--packing")
    shuffle_options: bool = setting(False, "Multiple choice by letter (decoders): show each question's options in a "
                                    "new random order every epoch.")
    gradient_checkpointing: bool = setting(False, "Keep only each layer's input and recompute the layer in backward "
                                           "(less activation memory, one more forward).", folder="ckpt")
    precision: str = setting("fp32", "fp32, or bf16: bf16 compute under autocast, fp32 master weights and optimizer "
                             "state (evaluation computes the same way).", choices=PRECISIONS)
    trim_heap_every: int = setting(4, "CPU: hand the heap's freed pages back to the kernel after every this many "
                                   "optimizer steps (0: never; 1: the lowest peak, the slowest steps). Changes no "
                                   "result.", identity=False, metavar="N")
    divergence_factor: float = setting(10.0, "A run diverges when its median loss over a window of steps is above "
                                       "this many times the first step's loss (0: only a NaN/inf loss counts).",
                                       compared=False)
    divergence_window: int = setting(10, "The divergence window's length in optimizer steps.", compared=False)
    eval_every: int = setting(0, "Evaluate on the validation file every this many optimizer steps (0: only after "
                              "training).", metavar="N")
    eval_limit: int | None = setting(None, "Evaluations during training score only the validation file's first N "
                                     "examples (none: all of it).", metavar="N")
    early_stopping: int = setting(0, "Stop after this many evaluations in a row without a better headline metric "
                                  "(0: never stop early).", metavar="PATIENCE")
    keep: str = setting("auto", "Which weights the run folder keeps: best (the best evaluation's) or last; auto: "
                        "best when evaluating during training, else last.", choices=KEEPS)
    checkpoint_every: int = setting(0, "Write a resumable checkpoint (trainable weights, optimizer, schedule, random "
                                    "states, data position) every this many optimizer steps (0: none). Changes no "
                                    "result.", identity=False, metavar="N")
    log_to: tuple[str, ...] = setting((), "Report the run to trackers as it trains, any of tensorboard, mlflow, wandb "
                                      "(comma list; each an optional extra).", identity=False, metavar="TRACKERS")
    mlflow_uri: str | None = setting(None, "MLflow tracking server (none: a local store in the run folder's mlruns/).",
                                     identity=False, metavar="URI")

    def __post_init__(self):
        def check(name: str, **rule) -> None:
            number(f"training.{name}", getattr(self, name), **rule)

        check("epochs", low=0, low_open=True, high=1e6)
        check("lr", low=0, low_open=True)
        check("batch_size", integer=True, low=1)
        check("grad_accum", integer=True, low=1)
        check("warmup_ratio", low=0, high=1, high_open=True)
        check("weight_decay", low=0)
        check("max_grad_norm", low=0)
        check("max_length", integer=True, low=8)
        check("seed", integer=True, low=0, high=2**63 - 1)
        check("max_steps", integer=True, low=1, optional=True)
        check("eval_batch_size", integer=True, low=1)
        check("theta_lr", low=0, low_open=True, optional=True)
        check("head_lr", low=0, low_open=True, optional=True)
        check("divergence_factor", low=0)
        check("divergence_window", integer=True, low=1)
        check("trim_heap_every", integer=True, low=0)
        check("eval_every", integer=True, low=0)
        check("eval_limit", integer=True, low=1, optional=True)
        check("early_stopping", integer=True, low=0)
        check("checkpoint_every", integer=True, low=0)
        names = self.log_to.split(",") if isinstance(self.log_to, str) else self.log_to
        object.__setattr__(self, "log_to", tuple(n.strip() for n in names if n.strip()))
        for name in self.log_to:
            if name not in TRACKERS:
                raise SettingError("training.log_to", name, "tensorboard, mlflow or wandb")
        if self.keep not in KEEPS:
            raise SettingError("training.keep", self.keep, " or ".join(KEEPS))
        if self.early_stopping and not self.eval_every:
            raise SettingError("training.early_stopping", self.early_stopping, "0 without --eval-every")
        if self.precision not in PRECISIONS:
            raise SettingError("training.precision", self.precision, " or ".join(PRECISIONS))
        for name in ("group_by_length", "packed", "shuffle_options", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(f"training.{name}", getattr(self, name), "true or false")
