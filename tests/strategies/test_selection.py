"""Per strategy: after one optimizer step exactly the intended parameters changed."""

import pytest
import torch

from conftest import tiny_batch, tiny_model
from loralab.models import architecture
from loralab.strategies import STRATEGIES, Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig
from loralab.strategies.selection import find_modules
from loralab.strategies.subspace import SubspaceConfig
from loralab.tasks.multiple_choice import choice_logits


def one_step(model):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    batch = tiny_batch()
    loss = torch.nn.functional.cross_entropy(choice_logits(model, batch), batch["labels"])
    loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, f"{name}: gradient presence does not match requires_grad"
    optimizer.step()


def changed_after_step(model):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    one_step(model)
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


HEAD = ("classifier.",)
QV = (".attention.self.query.", ".attention.self.value.")
ATTENTION = QV + (".attention.self.key.", ".attention.output.dense.")
# strategy -> (name fragments of the parameters that must change; those that must not exist as trainable)
CASES = {
    "full": (None, StrategyConfig(Strategy.FULL)),
    "attention": (ATTENTION + HEAD, StrategyConfig(Strategy.ATTENTION)),
    "qv": (QV + HEAD, StrategyConfig(Strategy.QV)),
    "qv, head frozen": (QV, StrategyConfig(Strategy.QV, train_head=False)),
    "lora": ((".lora_A", ".lora_B") + HEAD, StrategyConfig(Strategy.LORA, LoraConfig(r=4, dropout=0.1))),
    "lora, head frozen": ((".lora_A", ".lora_B"), StrategyConfig(Strategy.LORA, LoraConfig(r=4), train_head=False)),
    "subspace": ((".subspace.theta",) + HEAD, StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(dim=50))),
    "subspace said, head only in the subspace": (
        (".subspace.theta", ".subspace.scales"),
        StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(dim=80, projection="said"), train_head=False)),
}


@pytest.mark.filterwarnings("ignore:the task head")
@pytest.mark.parametrize("fragments,config", CASES.values(), ids=CASES.keys())
def test_exactly_the_intended_parameters_change(fragments, config):
    model = tiny_model("bert")
    apply_strategy(model, config)
    # LoRA's B starts at zero, so its A gets no gradient on the first step; nudge B so both move.
    # Likewise theta starts at zero, which leaves the SAID scales without gradient.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("lora_B", "subspace.theta")):
                p.normal_(std=0.1)
    changed = changed_after_step(model)
    # A bias added to every choice's score cancels in the softmax over choices: its gradient is zero
    # up to rounding (which AdamW's normalisation may blow up into a step), so whether it moves is moot.
    invariant = {"classifier.bias"}
    names = {n for n, _ in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if fragments is None:
        assert trainable == names
        assert changed - invariant == names - invariant
    else:
        wanted = {n for n in names if any(f in "." + n for f in fragments)}
        assert wanted and trainable == wanted
        assert changed - invariant == wanted - invariant and changed <= wanted


@pytest.mark.parametrize("strategy", [Strategy.QV, Strategy.LORA, Strategy.SUBSPACE, Strategy.VERA, Strategy.IA3])
def test_frozen_head_warns_where_the_strategy_is_applied(strategy):
    config = StrategyConfig(strategy, subspace=SubspaceConfig(dim=50), train_head=False)
    with pytest.warns(UserWarning, match="random initialisation") as caught:
        apply_strategy(tiny_model("bert"), config)
    assert caught[0].filename == __file__


def test_every_strategy_has_one_mechanism():
    assert set(STRATEGIES) == set(Strategy)


def test_all_linear_targets_every_linear_outside_the_head():
    model = tiny_model("bert")
    names = find_modules(model, architecture(model), ("all-linear",))
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.startswith("classifier")]
    assert names == linears


def test_unknown_target_is_refused():
    from loralab.errors import LoralabError

    with pytest.raises(LoralabError, match="match no module"):
        apply_strategy(tiny_model("bert"), StrategyConfig(Strategy.LORA, LoraConfig(targets=("nonexistent",))))
    with pytest.raises(LoralabError, match="unknown strategy"):
        StrategyConfig("bogus")
