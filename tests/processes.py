"""Killing a child process at a chosen moment: a file it writes decides when, never a timing."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Callable

import pytest


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], *, what: str, timeout: float = 600) -> None:
    """Poll `ready` until it holds, then `kill -9` the process and reap it. Fails when the process ends
    first (with the end of its stderr, when piped) or after `timeout` seconds: a bound for a loaded
    machine, not a timing the test depends on."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                err = process.stderr.read() if process.stderr else ""
                err = err.decode(errors="replace") if isinstance(err, bytes) else err
                pytest.fail(f"the process ended before {what}: {err[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:.0f} s")
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
