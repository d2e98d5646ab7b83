"""A subspace on a model: exact at theta = 0, only theta (and what trains directly) moves, rebuilt from its seed,
clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from loralab.errors import LoralabError
from loralab.strategies.subspace.attach import SubspaceConfig, apply_subspace
from loralab.strategies.subspace.projections import Projection
from tiny_networks import DIMS, MODELS, bert, mlp, one_thread, outputs, train_a_little  # noqa: F401  (autouse fixture)


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
    subspace = apply_subspace(model, SubspaceConfig(dim=DIMS[kind], projection=kind), head=direct)
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


@pytest.mark.parametrize("kind", list(Projection))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_seed_and_trained_numbers_rebuild_the_model_bitwise(kind, model_name):
    # All a run folder keeps of a subspace run (loralab.runs): the config with its seed, and what trained.
    build, batch, direct = MODELS[model_name]
    model, inputs = build(), batch()
    config = SubspaceConfig(dim=DIMS[kind], projection=kind, seed=11)
    apply_subspace(model, config, head=direct)
    train_a_little(model, inputs)
    trained = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    assert sum(t.numel() for name, t in trained.items() if not name.startswith(direct[0] + ".")) == DIMS[kind]

    fresh = build()
    apply_subspace(fresh, config, head=direct)
    assert not fresh.load_state_dict(trained, strict=False).unexpected_keys
    with torch.no_grad():
        assert torch.equal(outputs(fresh, inputs), outputs(model, inputs))
        assert not torch.equal(outputs(fresh, inputs), outputs(build(), inputs))


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
    subspace = apply_subspace(model, SubspaceConfig(dim=16), head=("classifier",), exclude=("bert.embeddings",))
    assert not any(name.startswith("bert.embeddings") for name in subspace.names)
    assert not any(p.requires_grad for name, p in model.named_parameters() if name.startswith("bert.embeddings"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dim=0), "dim=0"),
        (dict(dim=2.5), "dim=2.5"),
        (dict(dim=8, projection="gaussian"), "projection='gaussian'"),
        (dict(dim=8, seed=-1), "seed=-1"),
        (dict(dim=8, exclude="classifier"), "exclude='classifier'"),
        (dict(dim=8, exclude=("",)), "exclude entry ''"),
    ],
)
def test_config_errors_name_the_field_and_value(kwargs, message):
    with pytest.raises(LoralabError, match=message.replace(".", r"\.")):
        SubspaceConfig(**kwargs)


def test_apply_errors_are_clear():
    with pytest.raises(LoralabError, match="head entry 'head'"):
        apply_subspace(mlp(), SubspaceConfig(dim=8), head=("head",))
    with pytest.raises(LoralabError, match="dim must exceed 6"):
        apply_subspace(mlp(), SubspaceConfig(dim=6, projection="said"))
    with pytest.raises(LoralabError, match="D=531"):
        apply_subspace(mlp(), SubspaceConfig(dim=600))
    model = mlp()
    apply_subspace(model, SubspaceConfig(dim=8))
    with pytest.raises(LoralabError, match="already has a subspace"):
        apply_subspace(model, SubspaceConfig(dim=8))
