"""One sweep process per sweep folder without --shard: a second is refused in one line; the lock of a
process that died is taken over."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from loralab.errors import LoralabError
from loralab.sweeps.sweep import LOCK, folder_lock


def test_a_second_holder_is_refused_and_the_first_releases(tmp_path):
    with folder_lock(tmp_path / "sw"):
        with pytest.raises(LoralabError, match="another loralab sweep is running in this folder"):
            folder_lock(tmp_path / "sw")
    with folder_lock(tmp_path / "sw"):  # free again
        pass


def _holder(folder, ready):
    code = textwrap.dedent(f"""
        import sys, time
        from filelock import FileLock
        lock = FileLock({str(folder / LOCK)!r}, timeout=0)
        lock.acquire()
        open({str(ready)!r}, "w").close()
        time.sleep(60)
    """)
    return subprocess.Popen([sys.executable, "-c", code])


def _wait(path, process):
    import time

    for _ in range(300):
        if path.exists():
            return
        assert process.poll() is None
        time.sleep(0.1)
    raise AssertionError("the holder never took the lock")


def test_another_process_holding_the_folder_refuses_the_cli(tmp_path, capsys):
    from loralab.cli import main

    folder = tmp_path / "sw"
    folder.mkdir()
    (tmp_path / "t.csv").write_text("id,prompt,A,B,answer\nq1,Why?,a,b,A\nq2,How?,c,d,B\n")
    (tmp_path / "exp.yaml").write_text("base: {train: t.csv, max_steps: 1}\nruns: [{strategy: lora}]\n")
    holder = _holder(folder, tmp_path / "ready")
    try:
        _wait(tmp_path / "ready", holder)
        assert main(["sweep", str(tmp_path / "exp.yaml"), "--out", str(folder), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "another loralab sweep is running" in err
        assert sorted(p.name for p in folder.iterdir()) == [LOCK]
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path):
    folder = tmp_path / "sw"
    folder.mkdir()
    holder = _holder(folder, tmp_path / "ready")
    _wait(tmp_path / "ready", holder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (folder / LOCK).exists()  # left behind by the killed process
    with folder_lock(folder):
        pass
