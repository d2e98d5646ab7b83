"""What machine a run's times were measured on: its processor by name.

Seconds measured on one processor say little about another (a comparison resumed across sessions may
land on an Intel Xeon with AVX-512 BF16 one day and an AMD EPYC with AVX2 the next, where a bf16 matrix
multiply runs at a sixtieth of the fp32 rate), so each run records its CPU and a report that sets runs'
costs side by side says when they come from different ones.
"""

from __future__ import annotations

import functools
import platform


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The processor's model name ('Intel(R) Xeon(R) Processor', 'AMD EPYC'), from /proc/cpuinfo where there is
    one, else what the platform says ('unknown' when nothing does)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip() or "unknown"
    except OSError:
        pass
    return platform.processor() or "unknown"
