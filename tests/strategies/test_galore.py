import copy

import pytest
import torch

galore_torch = pytest.importorskip("galore_torch")

from adapter_cases import base_model  # noqa: E402
from loralab.errors import LoralabError  # noqa: E402
from loralab.strategies.galore import (GaloreConfig, galore_optimizer, galore_param_groups,  # noqa: E402
                                       optimizer_state_bytes, projected)

# (model type, settings): ranks below and above the tiny models' sizes (32 and 64), refreshes within the steps.
CASES = {
    "bert-rank-4-gap-2": ("bert", GaloreConfig(rank=4, update_proj_gap=2, scale=0.25)),
    "llama-rank-8-gap-3": ("llama", GaloreConfig(rank=8, update_proj_gap=3, scale=1.0)),
    "bert-attention-only-rank-40": ("bert", GaloreConfig(rank=40, update_proj_gap=2,
                                                         targets=("query", "key", "value", "attention_output"))),
}


def model_and_twin(case):
    model = base_model(CASES[case][0])
    model.requires_grad_(True)  # GaLore trains every weight
    return model, copy.deepcopy(model)


def reference_groups(model, config):
    """galore-torch's recipe, written out by hand: the chosen weight matrices projected, the rest plain."""
    if config.targets == ("all-linear",):  # every linear layer but the head
        matrices = [m.weight for n, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and n not in ("classifier", "score")]
    else:
        matrices = [p for n, p in model.named_parameters() if p.dim() == 2 and ".attention." in n]
    ids = {id(p) for p in matrices}
    return [{"params": [p for p in model.parameters() if id(p) not in ids]},
            {"params": matrices, "rank": config.rank, "update_proj_gap": config.update_proj_gap,
             "scale": config.scale, "proj_type": "std"}]


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_updates_as_galore_adamw_on_the_same_gradients(case):
    model, twin = model_and_twin(case)
    config = CASES[case][1]
    ours = galore_optimizer(model, config, lr=1e-2, weight_decay=0.01)
    theirs = galore_torch.GaLoreAdamW([dict(g, weight_decay=0.01) for g in reference_groups(twin, config)], lr=1e-2)
    assert {id(p) for p in projected(model, config)} == {id(p) for p in ours.param_groups[-1]["params"]}
    assert len(ours.param_groups[-1]["params"]) == len(theirs.param_groups[-1]["params"])
    g = torch.Generator().manual_seed(0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(5):  # past at least one refresh of the projection
        for p, q in zip(model.parameters(), twin.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        ours.step(), theirs.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p, q), name
        assert not torch.equal(p, before[name]), name


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_projected_update_has_rank_at_most_r(case):
    model, _ = model_and_twin(case)
    config = CASES[case][1]
    optimizer = galore_optimizer(model, config, lr=1e-2)
    weights = projected(model, config)
    before = [w.detach().clone() for w in weights]
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    for w, w0 in zip(weights, before):
        assert torch.linalg.matrix_rank(w.detach() - w0) <= min(config.rank, *w.shape)


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_bytes_match_the_optimizer_state_and_undercut_adamw(case):
    model, _ = model_and_twin(case)
    config = CASES[case][1]
    optimizer = galore_optimizer(model, config, lr=1e-2)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()

    def tensor_bytes(t):
        return t.numel() * t.element_size()

    held = 0
    for state in optimizer.state.values():
        held += tensor_bytes(state["exp_avg"]) + tensor_bytes(state["exp_avg_sq"])
        if "projector" in state:
            held += tensor_bytes(state["projector"].ortho_matrix)
    counted = optimizer_state_bytes(model, config)
    assert counted.galore == held
    adam = torch.optim.AdamW(model.parameters())
    adam.step()
    assert counted.adamw == sum(tensor_bytes(s["exp_avg"]) + tensor_bytes(s["exp_avg_sq"]) for s in adam.state.values())
    assert counted.ratio < 1 or config.rank >= 32


def test_groups_take_a_strategys_parameters():
    model, _ = model_and_twin("bert-rank-4-gap-2")
    model.requires_grad_(False)
    query = model.bert.encoder.layer[0].attention.self.query
    query.requires_grad_(True)
    groups = galore_param_groups(model, CASES["bert-rank-4-gap-2"][1])
    assert [g["params"] for g in groups] == [[query.bias], [query.weight]]


@pytest.mark.parametrize("field,value", [("rank", 0), ("update_proj_gap", 0), ("scale", 0.0), ("targets", ())])
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(LoralabError, match=f"strategy.galore.{field}"):
        GaloreConfig(**{field: value})
