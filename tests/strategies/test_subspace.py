"""Random-subspace training: exact at theta = 0, only theta trains, P is what it claims, checkpoints round-trip."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn
from torch.nn.utils import parametrize

from loralab.errors import LoralabError
from loralab.strategies.subspace import (
    BUILDERS,
    FastfoodProjection,
    Projection,
    SubspaceConfig,
    _sylvester,
    apply_subspace,
    hadamard,
    load_subspace,
    read_subspace_metadata,
    save_subspace,
    subspace_of,
)


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and on a shared CPU two OpenMP threads waiting on each
    # other made these tests ~100x slower. Restored afterwards for other test modules.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Per-projection settings: said spends one of d on each weight tensor, so it needs a larger d.
DIMS = {Projection.DENSE: 24, Projection.SPARSE: 24, Projection.FASTFOOD: 24, Projection.SAID: 64}


def mlp(width: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))


def bert(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100, num_labels=3
    )
    return transformers.BertForSequenceClassification(config).eval()


def mlp_batch() -> dict:
    return {"input": torch.randn(5, 12, generator=torch.Generator().manual_seed(1))}


def bert_batch() -> dict:
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(0, 100, (4, 7), generator=g), "attention_mask": torch.ones(4, 7, dtype=torch.long)}


def outputs(model: nn.Module, batch: dict) -> torch.Tensor:
    out = model(**batch)
    return out if isinstance(out, torch.Tensor) else out.logits


MODELS = {"mlp": (mlp, mlp_batch, ("4",)), "bert": (bert, bert_batch, ("classifier",))}


def explicit(projection: nn.Module, sizes: list[int], dim: int) -> torch.Tensor:
    """The D x d matrix P, column by column: P e_j."""
    columns = []
    for j in range(dim):
        e = torch.zeros(dim)
        e[j] = 1
        columns.append(torch.cat([projection(e, i) for i in range(len(sizes))]))
    return torch.stack(columns, dim=1)  # (D, d)


@pytest.mark.parametrize("kind", list(Projection))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_zero_theta_reproduces_the_base_model_exactly(kind, model_name):
    build, batch, _ = MODELS[model_name]
    base, model, inputs = build(), build(), batch()
    subspace = apply_subspace(model, SubspaceConfig(dim=DIMS[kind], projection=kind, seed=3))
    assert subspace.trainable == DIMS[kind]
    with torch.no_grad():
        assert torch.equal(outputs(model, inputs), outputs(base, inputs))


@pytest.mark.parametrize("kind", list(Projection))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_only_theta_scales_and_direct_parameters_train(kind, model_name):
    build, batch, direct = MODELS[model_name]
    model, inputs = build(), batch()
    before = {name: t.clone() for name, t in model.state_dict().items()}
    subspace = apply_subspace(model, SubspaceConfig(dim=DIMS[kind], projection=kind, direct=direct))
    trainable = [p for p in model.parameters() if p.requires_grad]
    expected = [subspace.theta] + ([subspace.scales] if kind is Projection.SAID else [])
    expected += [p for name, p in model.named_parameters() if name.startswith(direct[0] + ".")]
    assert {id(p) for p in trainable} == {id(p) for p in expected}

    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    outputs(model, inputs).square().mean().backward()
    assert all(p.grad is not None for p in trainable)
    # At theta = 0 the said scales multiply a zero update, so only their gradient may still be zero.
    assert all(p.grad.abs().sum() > 0 for p in trainable if p is not subspace.scales)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    with torch.no_grad():
        before_step = outputs(model, inputs)
    optimizer.step()

    for module in model.modules():
        if parametrize.is_parametrized(module):
            for plist in module.parametrizations.values():
                assert not isinstance(plist.original, nn.Parameter)  # W0 is a buffer
    after = model.state_dict()
    for name, value in before.items():
        w0 = name.replace(".weight", ".parametrizations.weight.original").replace(".bias", ".parametrizations.bias.original")
        if name.startswith(direct[0] + "."):
            assert not torch.equal(after[name], value), name
        elif w0 in after:
            assert torch.equal(after[w0], value), name
        else:
            assert torch.equal(after[name], value), name  # buffers such as position ids
    assert subspace.theta.abs().sum() > 0
    with torch.no_grad():
        assert not torch.equal(outputs(model, inputs), before_step)


@pytest.mark.parametrize("kind", [Projection.DENSE, Projection.SPARSE, Projection.FASTFOOD])
@pytest.mark.parametrize("sizes", [[48, 80], [300, 700, 24]])  # D = 128 (a multiple of n), 1024 (and cut tensors)
def test_projection_columns_have_unit_norm(kind, sizes):
    dim = 10
    projection = BUILDERS[kind](sizes, dim, torch.Generator().manual_seed(0))
    norms = explicit(projection, sizes, dim).norm(dim=0)
    assert torch.allclose(norms, torch.ones(dim), atol=1e-5), norms


def test_fastfood_columns_have_unit_norm_on_average_when_the_last_block_is_cut():
    sizes, dim = [500, 477], 10  # D = 977: the last 16-row block keeps 1 row
    norms = explicit(FastfoodProjection(sizes, dim, torch.Generator().manual_seed(0)), sizes, dim).norm(dim=0)
    assert torch.allclose(norms, torch.ones(dim), atol=0.05), norms


def test_sparse_projection_has_about_sqrt_d_nonzeros_per_column():
    sizes, dim = [900, 700], 8
    matrix = explicit(BUILDERS[Projection.SPARSE](sizes, dim, torch.Generator().manual_seed(0)), sizes, dim)
    assert ((matrix != 0).sum(dim=0) == 40).all()  # round(sqrt(1600))


def test_hadamard_matches_sylvester_matrix():
    for n in (1, 2, 8, 64, 2048):
        x = torch.randn(3, n, dtype=torch.float64)
        assert torch.allclose(hadamard(x), x @ _sylvester(n, torch.float64, torch.device("cpu")))


def test_fastfood_equals_an_explicit_dense_build():
    sizes, dim = [40, 30], 6  # n = 8, ceil(70 / 8) = 9 blocks, the last one cut
    projection = FastfoodProjection(sizes, dim, torch.Generator().manual_seed(5))
    n = projection.n
    hadamard_matrix = _sylvester(n, torch.float32, torch.device("cpu"))
    blocks = []
    for b in range(projection.signs.shape[0]):
        permutation = torch.eye(n)[projection.permutation[b]]  # (Pi v)_i = v_perm[i]
        block = hadamard_matrix @ torch.diag(projection.gauss[b]) @ permutation @ hadamard_matrix
        blocks.append(block @ torch.diag(projection.signs[b]))  # H G Pi H B, (n, n)
    dense = torch.cat(blocks)[: sum(sizes), :dim]  # (D, d): theta's padding meets the last n - d columns
    assert torch.allclose(explicit(projection, sizes, dim), dense, atol=1e-5)


@pytest.mark.parametrize("kind", list(Projection))
def test_projection_is_rebuilt_identically_from_its_seed(kind):
    sizes = [100, 60]
    first, second, other = (BUILDERS[kind](sizes, 8, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(explicit(first, sizes, 8), explicit(second, sizes, 8))
    assert not torch.equal(explicit(first, sizes, 8), explicit(other, sizes, 8))


def train_a_little(model: nn.Module, inputs: dict, steps: int = 3) -> None:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        outputs(model, inputs).square().mean().backward()
        optimizer.step()


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


def test_tied_weights_are_one_tensor_of_the_subspace():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encode = nn.Linear(6, 6, bias=False)
            self.decode = nn.Linear(6, 6, bias=False)
            self.decode.weight = self.encode.weight

        def forward(self, x):
            return self.decode(self.encode(x))

    model = Tied()
    subspace = apply_subspace(model, SubspaceConfig(dim=4, projection="dense"))
    assert subspace.total == 36
    train_a_little(model, {"x": torch.randn(3, 6)})
    assert torch.equal(model.encode.weight, model.decode.weight)
    assert not torch.equal(model.encode.weight, model.encode.parametrizations.weight.original)


def test_exclude_freezes_and_leaves_out():
    model = bert()
    subspace = apply_subspace(model, SubspaceConfig(dim=16, direct=("classifier",)), exclude=("bert.embeddings",))
    assert not any(name.startswith("bert.embeddings") for name in subspace.names)
    assert not any(p.requires_grad for name, p in model.named_parameters() if name.startswith("bert.embeddings"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dim=0), "dim=0"),
        (dict(dim=2.5), "dim=2.5"),
        (dict(dim=8, projection="gaussian"), "projection='gaussian'"),
        (dict(dim=8, seed=-1), "seed=-1"),
        (dict(dim=8, direct="classifier"), "direct='classifier'"),
        (dict(dim=8, direct=("",)), "direct entry ''"),
    ],
)
def test_config_errors_name_the_field_and_value(kwargs, message):
    with pytest.raises(LoralabError, match=message.replace(".", r"\.")):
        SubspaceConfig(**kwargs)


def test_apply_errors_are_clear():
    with pytest.raises(LoralabError, match="direct entry 'head'"):
        apply_subspace(mlp(), SubspaceConfig(dim=8, direct=("head",)))
    with pytest.raises(LoralabError, match="dim must exceed 6"):
        apply_subspace(mlp(), SubspaceConfig(dim=6, projection="said"))
    with pytest.raises(LoralabError, match="D=531"):
        apply_subspace(mlp(), SubspaceConfig(dim=600))
    model = mlp()
    apply_subspace(model, SubspaceConfig(dim=8))
    with pytest.raises(LoralabError, match="already has a subspace"):
        apply_subspace(model, SubspaceConfig(dim=8))
