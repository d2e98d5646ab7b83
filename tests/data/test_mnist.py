"""The MNIST IDX reader: the real files, and clear errors for damaged ones."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from loralab.data.mnist import FILES, Split, load_mnist, read_idx
from loralab.errors import LoralabError

MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


def write_idx(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


def idx_bytes(data: torch.Tensor) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, data.dim()) + struct.pack(f">{data.dim()}I", *data.shape)
    return header + bytes(data.flatten().tolist())


@pytest.mark.skipif(not MNIST.is_dir(), reason="MNIST files not present")
def test_reads_the_real_files():
    train, test = load_mnist(MNIST, Split.TRAIN), load_mnist(MNIST, "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert torch.bincount(test.labels).tolist()[:2] == [980, 1135]
    flat = test.flat()
    assert flat.shape == (10000, 784) and 0 <= flat.min() and flat.max() == 1


def test_round_trips_a_small_file(tmp_path):
    data = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)
    assert torch.equal(read_idx(write_idx(tmp_path / "x.gz", idx_bytes(data)), ndim=3), data)


@pytest.mark.parametrize(
    "payload, message",
    [
        (struct.pack(">HBBI", 0, 0x08, 3, 2), "truncated: the header needs 16 bytes"),
        (idx_bytes(torch.zeros(2, 3, 4, dtype=torch.uint8))[:-5], "truncated: the header promises 24 bytes"),
        (idx_bytes(torch.zeros(2, 3, 4, dtype=torch.uint8)) + b"\0", "1 unexpected bytes"),
        (struct.pack(">HBB", 0, 0x08, 1) + bytes(20), "bad magic number 0x00000801"),
        (struct.pack(">HBB", 0x1F8B, 0x08, 3) + bytes(20), "bad magic number"),
        (b"\0\0", "truncated"),
    ],
)
def test_damaged_files_are_named_with_what_is_wrong(tmp_path, payload, message):
    path = write_idx(tmp_path / "images.gz", payload)
    with pytest.raises(LoralabError, match=message) as error:
        read_idx(path, ndim=3)
    assert str(path) in str(error.value)


def test_a_cut_gzip_stream_and_a_plain_file_are_refused(tmp_path):
    whole = gzip.compress(idx_bytes(torch.zeros(10, 28, 28, dtype=torch.uint8)))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(LoralabError, match="cut.gz: not a complete gzip file"):
        read_idx(tmp_path / "cut.gz", ndim=3)
    (tmp_path / "plain").write_bytes(idx_bytes(torch.zeros(1, 2, 2, dtype=torch.uint8)))
    with pytest.raises(LoralabError, match="plain: not a complete gzip file"):
        read_idx(tmp_path / "plain", ndim=3)
    with pytest.raises(LoralabError, match="missing.gz: file not found"):
        read_idx(tmp_path / "missing.gz", ndim=3)


def test_images_and_labels_must_agree(tmp_path):
    images, labels = FILES[Split.TEST]
    write_idx(tmp_path / images, idx_bytes(torch.zeros(3, 28, 28, dtype=torch.uint8)))
    write_idx(tmp_path / labels, idx_bytes(torch.tensor([1, 2], dtype=torch.uint8)))
    with pytest.raises(LoralabError, match="3 images, but .* has 2 labels"):
        load_mnist(tmp_path, "test")
    write_idx(tmp_path / labels, idx_bytes(torch.tensor([1, 2, 12], dtype=torch.uint8)))
    with pytest.raises(LoralabError, match="label 12"):
        load_mnist(tmp_path, "test")
    with pytest.raises(LoralabError, match="split='valid'"):
        load_mnist(tmp_path, "valid")
