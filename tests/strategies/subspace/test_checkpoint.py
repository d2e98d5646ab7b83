"""Subspace checkpoints round-trip bitwise, grow with d only, and refuse the wrong base model."""

from __future__ import annotations

import pytest
import torch

from loralab.errors import LoralabError
from loralab.strategies.subspace.attach import SubspaceConfig, apply_subspace, subspace_of
from loralab.strategies.subspace.checkpoint import load_subspace, read_subspace_metadata, save_subspace
from loralab.strategies.subspace.projections import Projection
from tiny_networks import DIMS, MODELS, mlp, one_thread, outputs, train_a_little  # noqa: F401  (autouse fixture)


@pytest.mark.parametrize("kind", list(Projection))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_reloaded_checkpoint_gives_bitwise_equal_outputs(tmp_path, kind, model_name):
    build, batch, direct = MODELS[model_name]
    model, inputs = build(), batch()
    apply_subspace(model, SubspaceConfig(dim=DIMS[kind], projection=kind, seed=11, direct=direct))
    train_a_little(model, inputs)
    save_subspace(tmp_path / "ckpt", model, base_model=f"tiny-{model_name}-seed0")

    fresh = build()
    loaded = load_subspace(tmp_path / "ckpt", fresh, base_model=f"tiny-{model_name}-seed0")
    assert loaded.config == subspace_of(model).config
    with torch.no_grad():
        assert torch.equal(outputs(fresh, inputs), outputs(model, inputs))


def test_checkpoint_size_grows_with_d_not_with_the_model(tmp_path):
    sizes = {}
    for width in (16, 256):  # D = 531 vs 70_403
        model = mlp(width)
        apply_subspace(model, SubspaceConfig(dim=128, projection="said"))
        folder = save_subspace(tmp_path / str(width), model, base_model=f"mlp-{width}")
        metadata = read_subspace_metadata(folder)
        sizes[width] = ((folder / "subspace.safetensors").stat().st_size, metadata["D"])
    (small, small_d), (large, large_d) = sizes[16], sizes[256]
    assert large_d > 100 * small_d
    assert small == large  # theta and scales only; the JSON names the tensors, whatever their size

    model = mlp(16)
    apply_subspace(model, SubspaceConfig(dim=512, projection="said"))
    bigger = save_subspace(tmp_path / "d512", model, base_model="mlp-16") / "subspace.safetensors"
    assert bigger.stat().st_size >= small + 4 * (512 - 128)  # float32 numbers


def test_loading_checks_the_base_model_and_its_shapes(tmp_path):
    model = mlp(16)
    apply_subspace(model, SubspaceConfig(dim=8))
    save_subspace(tmp_path / "ckpt", model, base_model="mlp-16")
    with pytest.raises(LoralabError, match="mlp-16"):
        load_subspace(tmp_path / "ckpt", mlp(16), base_model="mlp-17")
    with pytest.raises(LoralabError, match="shape"):
        load_subspace(tmp_path / "ckpt", mlp(32), base_model="mlp-16")
    with pytest.raises(LoralabError, match="not found"):
        load_subspace(tmp_path / "nothing", mlp(16), base_model="mlp-16")
