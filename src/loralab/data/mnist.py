"""MNIST from its gzip-compressed IDX files (LeCun et al. 1998), the layout yann.lecun.com published.

An IDX file is a big-endian header, then the data in row-major order:

    0x00 0x00 <type> <ndim>    magic: two zero bytes, the element type (0x08 = unsigned byte), ndim
    ndim x uint32              the size of each axis
    prod(sizes) elements

A folder holds `train-images.idx3-ubyte.gz`, `train-labels.idx1-ubyte.gz` and the `t10k-` pair
for the test split. Every problem names the file and what is wrong with it.
"""

from __future__ import annotations

import enum
import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from loralab.errors import LoralabError

UBYTE = 0x08


class Split(enum.Enum):
    TRAIN = "train"
    TEST = "test"


FILES = {
    Split.TRAIN: ("train-images.idx3-ubyte.gz", "train-labels.idx1-ubyte.gz"),
    Split.TEST: ("t10k-images.idx3-ubyte.gz", "t10k-labels.idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class Mnist:
    """One split: the images as uint8 pixels and their digit labels."""

    images: torch.Tensor
    """(n, 28, 28) uint8, 0 = background."""
    labels: torch.Tensor
    """(n,) int64 digits 0-9."""

    def __len__(self) -> int:
        return self.labels.shape[0]

    def flat(self) -> torch.Tensor:
        """Images as (n, 784) float32 in [0, 1], the input of a fully connected network."""
        return self.images.reshape(len(self), -1).float() / 255  # (n, 784)


def read_idx(path: str | Path, *, ndim: int) -> torch.Tensor:
    """Read one gzip-compressed IDX file of unsigned bytes with `ndim` axes."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise LoralabError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise LoralabError(f"{path}: is a directory, expected a gzip-compressed IDX file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise LoralabError(f"{path}: not a complete gzip file ({e})") from None
    except OSError as e:
        raise LoralabError(f"{path}: cannot read ({e})") from None

    header = 4 + 4 * ndim
    if len(raw) < 4:
        raise LoralabError(f"{path}: truncated: {len(raw)} bytes, too short for the 4-byte IDX magic number")
    zero, kind, axes = struct.unpack(">HBB", raw[:4])
    if zero != 0 or kind != UBYTE or axes != ndim:
        raise LoralabError(
            f"{path}: bad magic number 0x{raw[:4].hex()}: expected 0x0000{UBYTE:02x}{ndim:02x} "
            f"(unsigned bytes, {ndim} axes)"
        )
    if len(raw) < header:
        raise LoralabError(f"{path}: truncated: the header needs {header} bytes, the file has {len(raw)}")
    sizes = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(sizes)
    body = len(raw) - header
    if body < expected:
        raise LoralabError(f"{path}: truncated: the header promises {expected} bytes of data for shape {sizes}, found {body}")
    if body > expected:
        raise LoralabError(f"{path}: {body - expected} unexpected bytes after the data of shape {sizes}")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(sizes)


def load_mnist(folder: str | Path, split: Split | str = Split.TRAIN) -> Mnist:
    """Read one split of MNIST from `folder`, checking that images and labels agree."""
    try:
        split = Split(split)
    except ValueError:
        raise LoralabError(f"invalid split={split!r}: expected one of {', '.join(s.value for s in Split)}") from None
    images_file, labels_file = (Path(folder) / name for name in FILES[split])
    images = read_idx(images_file, ndim=3)
    labels = read_idx(labels_file, ndim=1).long()
    if images.shape[0] != labels.shape[0]:
        raise LoralabError(f"{images_file}: {images.shape[0]} images, but {labels_file} has {labels.shape[0]} labels")
    if labels.numel() and int(labels.max()) > 9:
        raise LoralabError(f"{labels_file}: label {int(labels.max())} is not a digit 0-9")
    return Mnist(images, labels)
