"""The architecture table, checked on a tiny model of every architecture and task-model class in it.

For each (architecture, head class) pair: the table's head is exactly what the task model adds on
top of its encoder, every projection role is found once per layer, and each strategy trains only
what it should. What "should" is comes from the table, so the first two tests are what keep it
honest about the real transformers modules.
"""

import copy

import pytest
import torch

from conftest import CAUSAL_LM, CLASSIFICATION, MULTIPLE_CHOICE, TINY, tiny_batch, tiny_model, tiny_text_batch
from loralab.errors import LoralabError
from loralab.models import ARCHITECTURES, ROLES, architecture, is_head, is_linear, is_output
from loralab.names import has_prefix, has_suffix
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig
from loralab.strategies.selection import find_modules
from loralab.strategies.subspace import SubspaceConfig
from loralab.tasks import completion
from loralab.tasks.classification import CLASSIFICATION as CLASSIFICATION_TASK
from loralab.tasks.multiple_choice import TASK as MULTIPLE_CHOICE_TASK

MODELS = [(model_type, head) for model_type, (_, _, classes) in TINY.items() for head in classes]
IDS = [f"{model_type}-{head.name.lower()}" for model_type, head in MODELS]


def task_of(head):
    return {MULTIPLE_CHOICE: MULTIPLE_CHOICE_TASK, CAUSAL_LM: completion.TASK}.get(head, CLASSIFICATION_TASK)


def completion_batch(seed: int = 0):
    """Two prompt + completion sequences of random ids, right-padded (a causal LM's training batch)."""
    g = torch.Generator().manual_seed(seed)
    items = [completion.EncodedCompletion(tuple(torch.randint(5, 100, (n,), generator=g).tolist()), prompt_length=p)
             for n, p in ((12, 5), (8, 3))]
    return completion.collate(items, pad_id=0)


def batch_for(head):
    return {MULTIPLE_CHOICE: tiny_batch, CAUSAL_LM: completion_batch}.get(head, tiny_text_batch)()


def outputs(model, head):
    model.eval()
    with torch.no_grad():
        return torch.tensor(task_of(head).outputs(model, batch_for(head), packed=False))


def test_every_architecture_in_the_table_has_a_tiny_model_of_each_head_class():
    assert set(TINY) == set(ARCHITECTURES)
    for model_type, (_, _, classes) in TINY.items():
        assert set(classes) == set(ARCHITECTURES[model_type].heads), model_type


# Parts of the encoder that pretrained checkpoints leave untrained, so they train with the head: MPNet's pooler
# (its pretraining has no sentence-level objective; the sequence-classification model does not use it).
ENCODER_PARTS_IN_HEAD = {("mpnet", MULTIPLE_CHOICE): {"mpnet.pooler"}}


@pytest.mark.parametrize("model_type,head", MODELS, ids=IDS)
def test_head_is_everything_the_task_model_adds_to_its_encoder(model_type, head):
    model = tiny_model(model_type, head=head)
    arch = architecture(model)
    with_weights = {name for name, child in model.named_children() if any(True for _ in child.parameters())}
    untrained = ENCODER_PARTS_IN_HEAD.get((model_type, head), set())
    # A causal LM adds its pretrained output layer, which is no new head.
    added = with_weights - {model.base_model_prefix} - ({arch.output} if head is CAUSAL_LM else set())
    assert set(arch.head) == added | untrained
    for name, _ in model.named_parameters():
        new = not has_prefix(name, model.base_model_prefix) or any(has_prefix(name, u) for u in untrained)
        assert (is_head(name, arch) or is_output(name, arch)) == new, name
    assert all(any(has_prefix(name, u) for name, _ in model.named_parameters()) for u in untrained)


@pytest.mark.parametrize("model_type,head", MODELS, ids=IDS)
def test_each_projection_role_is_found_once_per_layer(model_type, head):
    model = tiny_model(model_type, head=head)
    arch = architecture(model)
    for role in ROLES:
        found = find_modules(model, arch, (role,))
        assert len(found) == model.config.num_hidden_layers, f"{role}: {found}"
        assert all(is_linear(model.get_submodule(name)) for name in found)
        assert all(has_suffix(name, arch.role(role)) for name in found)


def expected_trainable(model, arch, strategy: Strategy) -> set[str]:
    """The parameter names a strategy must leave trainable, from the table's names."""
    names = [name for name, _ in model.named_parameters()]
    head = {name for name in names if is_head(name, arch)}
    roles = {Strategy.ATTENTION: ROLES, Strategy.QV: ("query", "value")}.get(strategy)
    if strategy is Strategy.FULL:
        return set(names)
    if roles is not None:
        return head | {name for name in names
                       if any(has_suffix(name.rpartition(".")[0], arch.role(role)) for role in roles)}
    leaves = {Strategy.LORA: ("lora_A", "lora_B"), Strategy.SUBSPACE: ("theta",)}[strategy]
    return head | {name for name in names if name.rpartition(".")[2] in leaves}


CONFIGS = {
    Strategy.FULL: StrategyConfig(Strategy.FULL),
    Strategy.ATTENTION: StrategyConfig(Strategy.ATTENTION),
    Strategy.QV: StrategyConfig(Strategy.QV),
    Strategy.LORA: StrategyConfig(Strategy.LORA, LoraConfig(r=2, targets=("all-linear",))),
    Strategy.SUBSPACE: StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(dim=20)),
}


@pytest.mark.parametrize("strategy", list(CONFIGS), ids=[s.value for s in CONFIGS])
@pytest.mark.parametrize("model_type,head", MODELS, ids=IDS)
def test_one_step_changes_only_what_the_strategy_trains(model_type, head, strategy):
    model = tiny_model(model_type, head=head)
    apply_strategy(model, CONFIGS[strategy])
    arch = architecture(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected_trainable(model, arch, strategy)
    assert any(is_head(name, arch) for name in trainable) == bool(arch.head)
    # B and theta start at zero, which leaves A (and every weight behind theta) without gradient.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rpartition(".")[2] in ("lora_B", "theta"):
                p.normal_(std=0.1)

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    task_of(head).loss(model, batch_for(head), packed=False).backward()
    moved = set()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
        if p.grad is not None and p.grad.abs().max() > 0:
            moved.add(name)
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}
    assert changed == moved and changed <= trainable
    assert any(is_head(name, arch) for name in changed) == bool(arch.head)
    assert strategy is Strategy.FULL or any(not is_head(name, arch) for name in changed)


@pytest.mark.parametrize("model_type,head", MODELS, ids=IDS)
def test_lora_adapted_model_equals_its_base_before_training(model_type, head):
    base = tiny_model(model_type, head=head)
    adapted = copy.deepcopy(base)
    report = apply_strategy(adapted, CONFIGS[Strategy.LORA])
    assert report.adapted_modules
    assert torch.equal(outputs(base, head), outputs(adapted, head))


def test_a_task_model_class_without_a_head_in_the_table_is_refused():
    import transformers

    config, settings, _ = TINY["bert"]
    model = transformers.BertForTokenClassification(config(**settings))
    with pytest.raises(LoralabError, match="ForMultipleChoice.*BertForTokenClassification"):
        architecture(model)


@pytest.mark.parametrize("model_type, expected", [
    ("bert", 512), ("roberta", 512 - 2), ("mpnet", 512 - 2), ("electra", 512), ("gpt2", 64), ("llama", None)])
def test_the_position_limit_is_the_table_of_absolute_positions(model_type, expected):
    """RoBERTa and MPNet count positions from padding_idx + 1; rotary positions (Llama) have no table to run off."""
    from loralab.models import position_limit

    head = MULTIPLE_CHOICE if MULTIPLE_CHOICE in TINY[model_type][2] else CLASSIFICATION
    assert position_limit(tiny_model(model_type, head=head)) == expected
