"""A run's record in a few lines: what `loralab train` prints when a run ends."""

from __future__ import annotations

from pathlib import Path

from loralab.metrics import METRICS, shown


def metrics_line(values: dict) -> str:
    """"MAP@3 0.5680  accuracy 0.4120": the metrics of `values` that loralab knows, in their order."""
    return "  ".join(f"{METRICS[k].label} {shown(v)}" for k, v in values.items() if k in METRICS)


def summary(record: dict, out: str | Path) -> str:
    """The status, strategy, parameters, time, memory, loss and validation metrics of a run's record."""
    lines = [
        f"run        {out}  ({record['status']})",
        f"strategy   {record['strategy']}",
        f"trainable  {record['trainable_params']:,} of {record['total_params']:,} parameters "
        f"({100 * record['trainable_params'] / record['total_params']:.2f}%)",
        f"time       {record['train_seconds']:.1f} s for {record['steps']} steps "
        f"(median step {record['median_step_seconds'] * 1000:.0f} ms, {record['tokens_per_second']:.0f} tokens/s)",
        f"memory     peak {record['peak_memory_mb']:.0f} MB",
    ]
    if record.get("loss"):
        lines.append(f"loss       {float(record['loss'][0]):.4f} -> {float(record['loss'][-1]):.4f}")
    if record.get("diverged_reason"):
        lines.append(f"diverged   at step {record.get('diverged_at_step')}: {record['diverged_reason']}")
    if "valid" in record:
        v = record["valid"]
        count = v.get("questions", v.get("examples"))
        lines.append(f"valid      {metrics_line(v)}  ({count} {'questions' if 'questions' in v else 'examples'})")
    return "\n".join(lines)
