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
import reference_fastfood
from tiny_networks import DIMS, MODELS, bert, mlp, mlp_batch, one_thread, outputs, train_a_little  # noqa: F401  (autouse fixture)


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


@pytest.mark.parametrize("kind", [Projection.FASTFOOD, Projection.SAID, Projection.DENSE])
@pytest.mark.parametrize("model_name", list(MODELS))
def test_gradients_reach_theta_as_through_the_original_transform(kind, model_name):
    """The flat gradient buffer and one P^T give theta (and the SAID scales) autograd's gradient through
    the original per-tensor W0 + P theta (reference_fastfood for Fastfood, the plain per-tensor rows else)."""
    build, batch, direct = MODELS[model_name]
    model, inputs = build(), batch()
    subspace = apply_subspace(model, SubspaceConfig(dim=DIMS[kind], projection=kind, seed=2), head=direct)
    with torch.no_grad():
        subspace.theta.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
        if subspace.scales is not None:
            subspace.scales.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(1))
    outputs(model, inputs).square().mean().backward()
    got = [subspace.theta.grad] + ([subspace.scales.grad] if subspace.scales is not None else [])

    base = build()
    theta = subspace.theta.detach().clone().requires_grad_(True)
    scales = None if subspace.scales is None else subspace.scales.detach().clone().requires_grad_(True)
    rows = reference_fastfood.rows if kind is not Projection.DENSE else (lambda p, t, i: p(t, i))
    weights = {}
    for i, name in enumerate(subspace.names):
        w0 = dict(base.named_parameters())[name]
        delta = rows(subspace.projection, theta, i).view(w0.shape)
        weights[name] = w0.detach() + (delta if scales is None else delta * scales[i])
    head = {n: p for n, p in model.named_parameters() if n.startswith(direct[0] + ".")}
    out = torch.func.functional_call(base, {**weights, **head}, args=(), kwargs=inputs)
    out = out if isinstance(out, torch.Tensor) else out.logits
    want = torch.autograd.grad(out.square().mean(), [theta] + ([scales] if scales is not None else []))
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-6), (g - w).abs().max()


def test_theta_gradient_over_two_forwards_and_two_backward_passes():
    model, inputs = mlp(), mlp_batch()
    subspace = apply_subspace(model, SubspaceConfig(dim=24, projection="fastfood"))
    outputs(model, inputs).square().mean().backward()
    once = subspace.theta.grad.clone()
    subspace.theta.grad = None
    first, second = outputs(model, inputs), outputs(model, inputs)  # theta unchanged: one P theta serves both
    first.square().mean().backward()
    second.square().mean().backward()
    assert torch.allclose(subspace.theta.grad, 2 * once)
    subspace.theta.grad = None
    (first, second) = outputs(model, inputs), outputs(model, inputs)
    (first.square().mean() + second.square().mean()).backward()  # one pass through both
    assert torch.allclose(subspace.theta.grad, 2 * once)


def test_delta_is_recomputed_when_theta_changes_and_kept_in_fp32_under_autocast():
    model, inputs = mlp(), mlp_batch()
    subspace = apply_subspace(model, SubspaceConfig(dim=24, projection="fastfood"))
    with torch.no_grad():
        subspace.theta.fill_(0.5)
        first = model[0].weight.clone()
        subspace.theta.fill_(-0.5)  # an in-place write: the cached P theta must not be reused
        second = model[0].weight.clone()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = model[0].weight.clone()
    w0 = model[0].parametrizations.weight.original
    assert torch.allclose(first - w0, -(second - w0), atol=1e-6) and not torch.equal(first, second)
    assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, second)
