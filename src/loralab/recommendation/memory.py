"""Which candidates fit a memory limit: an estimate from parameter counts, then a three-step probe.

Training with AdamW in fp32 holds, per parameter, its weight (4 bytes) and, per *trained* parameter,
a gradient and Adam's two moments (12 bytes more):

    estimate = 4 * total + 12 * trainable   (bytes; activations come on top)

A candidate whose estimate alone is over the limit is excluded without loading more than its counts.
The others take three real optimizer steps (a probe: an ordinary run folder, `max_steps=3`; the
median step, past the first one's warm-up, is the candidate's first step-time measure) whose
measured peak memory (CUDA: max allocated; CPU: the process's peak RSS, interpreter and libraries
included) includes the activations; over the limit, the candidate is excluded. Every pilot's peak is
checked again, since longer questions in later batches can need more.

The probe sees only the first batch; the run's peak comes with its largest one. When the data holds
a batch with more tokens than the probe's, the probe's peak is scaled to it along the fitted power
law of `cost.py` (what training adds grows as tokens^b; the memory held before the step does not),
and that prediction is checked against the limit too.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from loralab.errors import LoralabError
from loralab.heap import release_heap
from loralab.models import count_parameters, load_tokenizer, pad_token_id
from loralab.recommendation.cost import predict_peak_mb
from loralab.recommendation.space import Candidate
from loralab.runs.config import RunConfig
from loralab.runs.one_run import run_task, task_model
from loralab.strategies import apply_strategy
from loralab.tasks import get_task, infer_task

_UNITS = {"": 1, "b": 1, "kb": 2**10, "k": 2**10, "mb": 2**20, "m": 2**20, "gb": 2**30, "g": 2**30,
          "tb": 2**40, "t": 2**40, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(text: str) -> float:
    """'8GB', '512 MB', '1.5g' -> megabytes (binary units: 1 GB = 1024 MB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS or float(match.group(1)) <= 0:
        raise LoralabError(f"invalid --memory {text!r}: expected a size such as 8GB or 512MB")
    return float(match.group(1)) * _UNITS[match.group(2).lower()] / 2**20


@dataclass(frozen=True)
class Fit:
    """What is known of one candidate's memory, and the verdict."""

    candidate: str
    """The candidate's name."""
    trainable_params: int
    """Parameters that train (the task head included)."""
    total_params: int
    """All parameters of the model with its head (and adapters)."""
    estimate_mb: float
    """4 bytes per parameter plus 12 per trained one."""
    probe_mb: float | None = None
    """Peak memory of the three-step probe (None: not probed)."""
    predicted_mb: float | None = None
    """The probe's peak scaled to the data's largest batch by the fitted exponent (None: the probe saw the largest)."""
    excluded: str | None = None
    """Why the candidate does not fit (None: it fits)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parameter_counts(candidate: Candidate, base: RunConfig) -> tuple[int, int]:
    """(trainable, total) parameters of the candidate, with its task's head, before any training."""
    config = candidate.config(base, {"lr": candidate.lr_range[0], "lora_r": base.strategy.lora.r,
                                     "lora_alpha": base.strategy.lora.alpha})
    task = get_task(infer_task(config.train, config.task))
    examples = task.read(config.train, config.task, limit=config.train_limit)
    space = task.label_space(examples, source=config.train)
    model = task_model(config.model, task, space, offline=config.offline, trust_remote_code=config.trust_remote_code,
                       seed=config.training.seed)
    apply_strategy(model, config.strategy)
    return count_parameters(model)


def estimate_mb(trainable: int, total: int) -> float:
    return (4 * total + 12 * trainable) / 2**20


def fits(peak_mb: float, limit_mb: float | None) -> bool:
    return limit_mb is None or peak_mb <= limit_mb


def batch_tokens(config: RunConfig) -> tuple[float, float]:
    """(tokens of a micro-batch of the probe, tokens of the data's largest micro-batch) for a probe of `config`:
    the probe trains on the first batch x grad_accum examples; length-grouped batches put the longest together."""
    task = run_task(config)
    tokenizer = load_tokenizer(config.model, offline=config.offline, trust_remote_code=config.trust_remote_code)
    examples = task.read(config.train, config.task, limit=config.train_limit)
    space = task.label_space(examples, source=config.train)
    items = task.encode(examples, tokenizer, config.training.max_length, space, source=config.train)
    pad, batch, accum = pad_token_id(tokenizer), config.training.batch_size, config.training.grad_accum
    tokens = [int(task.collate([item], pad)["attention_mask"].sum()) for item in items]
    probe = sum(tokens[: batch * accum]) / max(1, min(accum, -(-len(tokens) // batch)))
    return probe, float(sum(sorted(tokens, reverse=True)[:batch]))


def resident_mb() -> float | None:
    """This process's resident memory now (Linux), None elsewhere; freed heap handed back first, as
    `PeakMemory` does before it resets the mark."""
    release_heap(collect=True)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def predicted_peak(probe_mb: float, before_mb: float, tokens: tuple[float, float], method: str) -> float | None:
    """The probe's peak at the data's largest batch (None when the probe's batch was as large)."""
    probe, largest = tokens
    if probe <= 0 or largest <= probe:
        return None
    return predict_peak_mb(probe_mb, before_mb, at=(1, probe), to=(1, largest), method=method)
