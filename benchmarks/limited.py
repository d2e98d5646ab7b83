"""Run a function in a child process under a memory limit, so running out ends the child, never the machine.

Two fences, both set below the machine's memory:
- the kernel's RLIMIT_DATA (private writable memory: the heap and every anonymous mapping, where
  PyTorch's CPU tensors live) makes an allocation past the limit fail inside the child, which then
  reports "out of memory" itself;
- a watchdog in the parent reads the child's resident set (/proc/PID/status, VmRSS) every
  `poll` seconds and kills the child with SIGKILL once it is over the limit: the fence for memory
  RLIMIT_DATA does not see (file-backed or shared pages) and for kernels that do not enforce it.

On a shared machine other processes may take the memory first. The watchdog also kills the child
when the machine's available memory (MemAvailable) falls under `reserve_bytes`, before the kernel's
OOM killer picks a victim (the largest process: the child, or someone else's); such an attempt,
like one the OOM killer ends anyway, says nothing about the limit and is recorded as an "error",
which a resumed benchmark tries again.

The child runs `function(*args)` (a module-level function, picklable) and sends back its dict
through a pipe; the parent adds how the child ended. What the parent returns is always a record:
"fits": "yes", "no: out of memory" or "no: too slow", with the child's peak resident set (its own
VmHWM when it finished, else the highest the watchdog saw).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
import traceback

GIB = 2**30
FITS = "yes"
OUT_OF_MEMORY = "no: out of memory"
TOO_SLOW = "no: too slow"


def memory_total() -> int:
    """The machine's memory in bytes (MemTotal)."""
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))


def available() -> int:
    """The machine's available memory in bytes (MemAvailable)."""
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def status_kib(pid: int | str, field: str) -> int | None:
    """A `/proc/PID/status` field in KiB (VmRSS, VmHWM), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def peak_rss_gib() -> float:
    """This process's resident-set high-water mark (VmHWM) in GiB."""
    kib = status_kib("self", "VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20


def is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, or PyTorch's allocator refusing."""
    text = str(error).lower()
    return isinstance(error, MemoryError) or "can't allocate memory" in text or "out of memory" in text \
        or "cannot allocate memory" in text


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the process that started it dies, so a benchmark killed mid-ladder leaves
    no attempt running on, holding its memory and a core beside the next run (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))
    except (OSError, AttributeError):
        pass


def _child(conn, limit_bytes: int | None, function, args) -> None:
    _die_with_parent()
    try:
        if limit_bytes is None:
            raise ValueError("no kernel limit asked")  # the kernel's fence: allocations past it fail here, in the child
        resource.setrlimit(resource.RLIMIT_DATA, (int(limit_bytes), int(limit_bytes)))
    except (ValueError, OSError):
        pass
    try:
        record = function(*args)
    except BaseException as error:  # noqa: BLE001 - every way of failing becomes a record
        oom = is_out_of_memory(error)
        record = {"fits": OUT_OF_MEMORY if oom else "error", "error": f"{type(error).__name__}: {error}"[:500],
                  **({} if oom else {"traceback": traceback.format_exc()[-2000:]})}
    record.setdefault("fits", FITS)
    record["peak_rss_gib"] = max(record.get("peak_rss_gib", 0.0), peak_rss_gib())
    try:
        conn.send(record)
    finally:
        conn.close()


def run(function, args: tuple, limit_bytes: int, timeout_s: float, poll: float = 0.05,
        kernel_limit: bool = True, reserve_bytes: int = GIB // 2) -> dict:
    """`function(*args)` in a fresh process held under `limit_bytes` and `timeout_s`; its record.

    `kernel_limit=False` leaves RLIMIT_DATA unset: the watchdog alone (what its test checks)."""
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no memory inherited from the parent
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, limit_bytes if kernel_limit else None, function, args), daemon=True)
    start = time.monotonic()
    process.start()
    send.close()
    highest_kib, verdict, record = 0, None, None
    while True:
        if receive.poll(poll):
            try:
                record = receive.recv()
            except EOFError:  # the child died without sending
                record = None
            break
        if not process.is_alive():
            break
        rss = status_kib(process.pid, "VmRSS") or 0
        highest_kib = max(highest_kib, rss)
        if rss * 1024 > limit_bytes:
            verdict = OUT_OF_MEMORY
        elif time.monotonic() - start > timeout_s:
            verdict = TOO_SLOW
        elif available() < reserve_bytes:
            verdict = "error"
        if verdict:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.join()
    seconds = time.monotonic() - start
    if record is None:
        record = {"fits": verdict or OUT_OF_MEMORY, "peak_rss_gib": highest_kib / 2**20}
        if verdict == OUT_OF_MEMORY:
            record["killed"] = f"watchdog: resident set over the {limit_bytes / GIB:.2f} GiB limit"
        elif verdict == TOO_SLOW:
            record["killed"] = f"watchdog: past the {timeout_s:.0f} s limit"
        elif verdict == "error":
            record["killed"] = (f"watchdog: the machine's available memory fell under {reserve_bytes / GIB:.2f} GiB "
                                "(other processes' use), not this attempt's limit")
        elif process.exitcode == -signal.SIGKILL:  # a kill nobody here sent: most likely the kernel's OOM killer
            record.update(fits="error", killed="SIGKILL from outside (the system's OOM killer: the machine, "
                                               "not this attempt's limit, ran out)")
        else:
            record.update(fits="error", error=f"the child ended with exit code {process.exitcode} and no record")
    record["attempt_seconds"] = round(seconds, 1)
    return record


def hold(gib: float, seconds: float = 0.0) -> dict:
    """Write `gib` GiB of memory 64 MiB at a time, then hold it `seconds`: what the tests use to
    check that the limit ends an over-allocating child."""
    chunks = []
    for _ in range(int(gib * 16)):
        chunks.append(b"\x01" * (64 * 2**20))  # written, so resident
        time.sleep(0.005)  # the watchdog's chance to see the set grow
    time.sleep(seconds)
    return {"held_gib": len(chunks) / 16}
