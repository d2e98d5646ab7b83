"""The memory limit: parameter counts exclude what cannot fit, a three-step probe what does not, the rest stays."""

from __future__ import annotations

import pytest

from recommend_fixtures import easy_search
from run_fixtures import save_tiny_bert
from loralab.errors import LoralabError
from loralab.recommendation.memory import estimate_mb, parse_memory
from loralab.recommendation.search import open_search, screen


@pytest.mark.parametrize("text,mb", [("8GB", 8192), ("512MB", 512), ("1.5g", 1536), ("2 GiB", 2048), ("1tb", 2**20)])
def test_sizes_read_as_megabytes(text, mb):
    assert parse_memory(text) == mb


@pytest.mark.parametrize("text", ["", "8 parsecs", "-1GB", "0MB", "GB"])
def test_a_bad_size_is_refused(text):
    with pytest.raises(LoralabError, match="--memory"):
        parse_memory(text)


def test_the_estimate_counts_weights_and_what_adam_keeps_per_trained_number():
    assert estimate_mb(trainable=0, total=2**20) == 4
    assert estimate_mb(trainable=2**20, total=2**20) == 16


@pytest.fixture(scope="module")
def wide(tmp_path_factory, minilm_tokenizer):
    """A 2-layer BERT 256 wide: MiniLM's 30,522-token vocabulary makes it ~9M parameters, so full
    fine-tuning needs ~140 MB before activations, LoRA ~36 MB."""
    return save_tiny_bert(tmp_path_factory.mktemp("model") / "wide", minilm_tokenizer, hidden=256)


def _screened(tmp_path, model, memory_mb):
    search = open_search(easy_search(tmp_path, model, memory_mb=memory_mb), tmp_path / "search", log=lambda _: None)
    screen(search)
    return search


def test_the_memory_limit_excludes_what_does_not_fit(tmp_path, wide):
    search = _screened(tmp_path, wide, memory_mb=100)
    full, lora = search.fits["wide-full"], search.fits["wide-lora"]
    assert full.estimate_mb > 100 > lora.estimate_mb
    # full: excluded by its parameter count alone, never loaded for a probe
    assert full.excluded.startswith("parameters alone need") and full.probe_mb is None
    assert not (tmp_path / "search" / "probes" / "main" / "wide-full").exists()
    # LoRA: its estimate fits, but a real step (the process, libraries and activations included) does not
    assert lora.excluded.startswith("a three-step probe peaked at") and lora.probe_mb > 100
    assert search.kept == []


def test_what_fits_is_kept(tmp_path, wide):
    search = _screened(tmp_path, wide, memory_mb=64 * 1024)
    assert [c.name for c in search.kept] == ["wide-full", "wide-lora"]
    assert all(fit.probe_mb is not None and fit.excluded is None for fit in search.fits.values())
    assert search.fits["wide-full"].trainable_params > 100 * search.fits["wide-lora"].trainable_params
