"""What a run's memory peaked at: CUDA's max allocated on a GPU, the process's peak RSS on CPU.

On CPU the peak is the kernel's high-water mark of the resident set, reset when the measurement
starts (`/proc/self/clear_refs`). Heap an earlier run in the same process freed (a sweep) would still
be resident then, so it is handed back first (`loralab.heap.release_heap`, which the loop also calls
during training).
"""

from __future__ import annotations

import torch

from loralab.heap import release_heap


class PeakMemory:
    """Peak memory inside a `with` block: CUDA max allocated, or peak RSS on CPU (Linux)."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peak_mb = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _release_freed_memory()  # else heap an earlier run in this process freed still counts as resident
            try:  # "5" resets the kernel's high-water mark of this process's RSS
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak_mb = _peak_rss_mb()
        return False


def _release_freed_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the kernel, so a run's peak RSS is not
    inflated by what an earlier run in the same process (a sweep) freed."""
    release_heap(collect=True)


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
