"""User-facing errors: the CLI prints these as one clear message and exits non-zero, no traceback."""

import errno
import os

# A write the machine refused for want of room: the user's to fix (free space), not a bug.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full(error: BaseException) -> str | None:
    """Why a write failed for want of room ("No space left on device"), else None; safetensors' Rust
    writer reports it as "(os error 28)" in a SafetensorError, not as an OSError."""
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        return os.strerror(error.errno)
    for code in DISK_FULL:
        if f"(os error {code})" in str(error):
            return os.strerror(code)
    return None


class LoralabError(Exception):
    """A problem with the user's input (a file, a flag, a run folder), not a bug in loralab.

    The message is kept to one line (a parser's multi-line message is folded), since the CLI
    promises one line on stderr.
    """

    def __init__(self, message: str = ""):
        super().__init__(" ".join(str(message).split()))
