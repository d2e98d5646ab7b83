"""Gradient checkpointing: the same losses and weights as without it, for every strategy, task and forward."""

import pytest
import torch

from conftest import CLASSIFICATION, tiny_model, tiny_text_batch
from loralab.errors import LoralabError
from loralab.models.checkpointing import blocks, checkpointing
from loralab.models.quantize import QuantizeConfig, quantize_model
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig, lora_layers
from loralab.strategies.subspace import SubspaceConfig
from loralab.tasks.multiple_choice import TASK as MC
from loralab.training import TrainConfig, train
from run_fixtures import random_questions

LORA = LoraConfig(r=4, alpha=16.0, dropout=0.1, targets=("query", "value"))  # dropout: masks must be redrawn alike

# (model type, strategy, packed forward, quantized base)
CASES = {
    "bert-lora-packed": ("bert", StrategyConfig(Strategy.LORA, LORA), True, False),
    "bert-lora-padded": ("bert", StrategyConfig(Strategy.LORA, LORA), False, False),
    "mpnet-lora-packed": ("mpnet", StrategyConfig(Strategy.LORA, LORA), True, False),
    "mpnet-full-padded": ("mpnet", StrategyConfig(Strategy.FULL), False, False),
    "bert-full-packed": ("bert", StrategyConfig(Strategy.FULL), True, False),
    "bert-qv": ("bert", StrategyConfig(Strategy.QV), True, False),
    "distilbert-lora": ("distilbert", StrategyConfig(Strategy.LORA, LORA), True, False),
    "bert-subspace": ("bert", StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(dim=50, projection="dense")),
                      True, False),
    "bert-qlora-packed": ("bert", StrategyConfig(Strategy.LORA, LORA), True, True),
}


def trained(model_type, strategy, packed, quantized, checkpointed):
    model = tiny_model(model_type)
    model.config.hidden_dropout_prob = 0.1
    apply_strategy(model, strategy)
    if quantized:
        quantize_model(model, QuantizeConfig("nf4", double_quant=True))
    config = TrainConfig(lr=1e-2, batch_size=4, epochs=2, warmup_ratio=0.0, packed=packed,
                         gradient_checkpointing=checkpointed)
    result = train(model, random_questions(), config, task=MC, pad_id=0, progress=False)
    return model, result


@pytest.mark.parametrize("case", list(CASES))
def test_checkpointed_training_equals_plain_training(case):
    plain, plain_result = trained(*CASES[case], checkpointed=False)
    checked, checked_result = trained(*CASES[case], checkpointed=True)
    assert checked_result.losses == plain_result.losses  # bit for bit: the recomputed forward is the same arithmetic
    assert len(plain_result.losses) == 6 and plain_result.losses[-1] != plain_result.losses[0]
    for (name, a), b in zip(plain.state_dict().items(), checked.state_dict().values()):
        assert torch.equal(a, b), name
    assert not any(hasattr(block, "_loralab_checkpointed") for block in checked.modules())  # left as found


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])  # transformers' own switch; loralab's wrapper
@pytest.mark.parametrize("packed", [True, False])
def test_checkpointing_recomputes_each_layer_in_backward(packed, model_type):
    """With LoRA the embeddings are frozen, so the hidden states entering the first layer do not require
    grad: the reentrant checkpoint's trap. The adapters must still get their gradients."""
    model = tiny_model(model_type)
    apply_strategy(model, StrategyConfig(Strategy.LORA, LORA))
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_()  # B = 0 would give A no gradient anyway
    calls = []
    getattr(model, model_type).encoder.layer[0].intermediate.register_forward_hook(lambda *_: calls.append(1))
    batch = {k: v for k, v in MC.collate(random_questions(4), pad_id=0).items()}
    model.train()
    with checkpointing(model, True):
        MC.loss(model, batch, packed).backward()
    assert len(calls) == 2  # forward, then again in backward
    assert all(layer.lora_A.grad is not None and layer.lora_A.grad.abs().sum() > 0 for layer in lora_layers(model))
    calls.clear()
    with torch.no_grad(), checkpointing(model, True):
        MC.loss(model, batch, packed)
    assert len(calls) == 1  # nothing to recompute without grad


@pytest.mark.parametrize("model_type", ["bert", "llama", "gpt2"])
def test_classification_heads_checkpoint_alike(model_type):
    batch = tiny_text_batch()
    grads = []
    for on in (False, True):
        model = tiny_model(model_type, head=CLASSIFICATION)
        apply_strategy(model, StrategyConfig(Strategy.LORA, LoraConfig(r=2, targets=("query", "value"))))
        model.train()
        torch.manual_seed(0)
        with checkpointing(model, on):
            model(**batch).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    assert all(torch.equal(a, b) for a, b in zip(*grads)) and len(grads[0]) > 2


def test_blocks_are_the_repeated_layers():
    model = tiny_model("bert")
    assert blocks(model) == list(model.bert.encoder.layer)
    with pytest.raises(LoralabError, match="no list of repeated layers"):
        blocks(torch.nn.Linear(2, 2))
