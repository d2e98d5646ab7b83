"""A real small file system to fill: a 2 MB tmpfs (we run as root), and helpers to fill it and check."""

import os
import subprocess

import pytest


@pytest.fixture
def disk(tmp_path):
    """A 2 MB tmpfs mounted for the test (we run as root); skipped, with the reason, where mounting is
    impossible, except under CI (CI=true), where that is a failure."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs to fill ({done.stderr.strip() or done.returncode}); needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def fill(folder, leave: int = 0) -> None:
    """Fill the file system holding `folder` up to `leave` bytes."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize - leave
    with open(folder / "filler", "wb") as f:
        try:
            f.write(b"\0" * max(free, 0))
        except OSError:
            pass


def refused(capsys, args) -> str:
    """`main(args)` exits 2 with one line saying the disk is full."""
    from loralab.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in err, err
    return lines[0]


def leftovers(folder) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name]
