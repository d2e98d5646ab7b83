"""The packed forward equals the model's own padded forward, in scores and in gradients."""

import copy

import pytest
import torch

from loralab.tasks.multiple_choice import TASK as MC

from conftest import CLASSIFICATION, MULTIPLE_CHOICE, TINY, tiny_model
from loralab.models import ARCHITECTURES
from loralab.models.packed import packed_logits, supports
from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig, lora_layers
from loralab.strategies.subspace import SubspaceConfig
from loralab.tasks.multiple_choice import choice_logits

PACKED_TYPES = ("bert", "roberta", "xlm-roberta", "mpnet")


def ragged_batch(pad_id: int, seed: int = 0, batch: int = 3, choices: int = 4, seq: int = 14) -> dict:
    """Right-padded sequences of different lengths, padding filled with the pad id as collate does."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (batch, choices, seq), generator=g)  # (batch, choices, seq)
    lengths = torch.randint(2, seq + 1, (batch, choices), generator=g)
    lengths[0, 0] = seq  # one sequence fills the batch, as the longest always does
    attention_mask = (torch.arange(seq) < lengths[..., None]).long()  # (batch, choices, seq)
    input_ids = input_ids.masked_fill(attention_mask == 0, pad_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "labels": torch.randint(0, choices, (batch,), generator=g),
            "choice_mask": torch.ones(batch, choices, dtype=torch.bool)}


def inputs(batch):
    return {k: v for k, v in batch.items() if k not in ("labels", "choice_mask")}


def no_dropout(model, p=0.0):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    return model


def prepared(model_type: str, strategy: str):
    model = tiny_model(model_type)
    if strategy == "lora":
        apply_strategy(model, StrategyConfig(Strategy.LORA, LoraConfig(r=4, targets=("all-linear",))))
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for layer in lora_layers(model):
                layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)
    elif strategy == "subspace":
        apply_strategy(model, StrategyConfig(Strategy.SUBSPACE, subspace=SubspaceConfig(dim=50, projection="dense")))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("subspace.theta"):
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.5)
    return model


@pytest.mark.parametrize("model_type", PACKED_TYPES)
@pytest.mark.parametrize("strategy", ["full", "lora", "subspace"])
def test_packed_scores_equal_padded_scores(model_type, strategy):
    model = prepared(model_type, strategy).eval()
    batch = ragged_batch(model.config.pad_token_id)
    assert supports(model)
    with torch.no_grad():
        padded = model(**inputs(batch)).logits
        packed = packed_logits(model, inputs(batch))
    assert packed is not None and packed.shape == padded.shape
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
    assert padded.std() > 1e-3  # scores that differ across options: the comparison can fail


@pytest.mark.parametrize("model_type", PACKED_TYPES)
@pytest.mark.parametrize("strategy", ["full", "lora"])
@pytest.mark.parametrize("p", [0.0, 1e-9])  # 1e-9: every dropout path runs (ours, and attention spelled out), keeps all
def test_packed_gradients_equal_padded_gradients(model_type, strategy, p):
    model = no_dropout(prepared(model_type, strategy), p).train()
    batch = ragged_batch(model.config.pad_token_id, seed=3)
    grads = []
    for packed in (False, True):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(choice_logits(model, batch, packed=packed), batch["labels"])
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 2
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-4, msg=name)


def test_dropout_is_active_in_training_only():
    model = tiny_model("bert")
    batch = inputs(ragged_batch(0))
    model.train()
    torch.manual_seed(0)
    first = packed_logits(model, batch)
    second = packed_logits(model, batch)
    assert not torch.allclose(first, second)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(packed_logits(model, batch), model(**batch).logits, atol=1e-5, rtol=1e-5)


def test_padding_positions_do_not_change_real_scores():
    model = tiny_model("bert")
    batch = ragged_batch(0)
    wider = {k: v for k, v in batch.items()}
    extra = torch.zeros(*batch["input_ids"].shape[:2], 5, dtype=torch.long)  # 5 more padding columns
    wider["input_ids"] = torch.cat([batch["input_ids"], extra], dim=-1)
    wider["attention_mask"] = torch.cat([batch["attention_mask"], extra], dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(packed_logits(model, inputs(wider)), packed_logits(model, inputs(batch)),
                                   atol=1e-6, rtol=1e-5)


def test_unsupported_inputs_and_models_take_the_padded_forward():
    model = tiny_model("bert")
    batch = ragged_batch(0)
    left = {k: v.flip(-1) if k in ("input_ids", "attention_mask") else v for k, v in batch.items()}
    assert packed_logits(model, inputs(left)) is None  # left padding: the pooled token would be padding
    with torch.no_grad():
        torch.testing.assert_close(choice_logits(model, left), model(**inputs(left)).logits)
    assert packed_logits(model, {"input_ids": batch["input_ids"]}) is None  # no mask


def test_packed_exactly_where_the_table_describes_it():
    for model_type, (_, _, classes) in TINY.items():
        described = ARCHITECTURES[model_type].packed is not None
        assert (model_type in PACKED_TYPES) == described, model_type
        if MULTIPLE_CHOICE in classes:
            assert supports(tiny_model(model_type)) == described, model_type
        if CLASSIFICATION in classes:
            assert not supports(tiny_model(model_type, head=CLASSIFICATION)), model_type


def test_peft_wrapped_models_are_not_packed():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(copy.deepcopy(tiny_model("bert")),
                                peft.LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier"]))
    assert not supports(model)


def test_training_packed_follows_the_padded_run():
    from run_fixtures import random_questions as items

    from loralab.training import TrainConfig, evaluate, train

    runs = []
    for packed in (True, False):
        model = no_dropout(tiny_model("bert"))
        config = TrainConfig(lr=1e-3, batch_size=4, epochs=2, seed=3, group_by_length=False, packed=packed)
        result = train(model, items(), config, task=MC, pad_id=0, progress=False)
        runs.append((result.losses, evaluate(model, items(seed=1), task=MC, pad_id=0, batch_size=4, packed=packed)))
    (packed_losses, packed_scores), (padded_losses, padded_scores) = runs
    assert len(packed_losses) == 6 and packed_losses[0] != packed_losses[-1]
    assert packed_losses == pytest.approx(padded_losses, abs=1e-5)
    assert packed_scores == pytest.approx(padded_scores, abs=1e-6)


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])
@pytest.mark.parametrize("p", [0.0, 1e-9])  # 1e-9: the spelled-out attention, which expands the mask, runs too
def test_bf16_casts_the_residual_stream_once_and_scores_as_autocast_alone_did(model_type, p, monkeypatch):
    import loralab.models.packed as packed

    model = no_dropout(prepared(model_type, "lora"), p).train()
    batch = inputs(ragged_batch(model.config.pad_token_id, seed=5))
    attention = model.base_model.encoder.layer[0].attention
    query = attention.self.query if model_type == "bert" else attention.attn.q
    seen = []
    query.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(0)
        now = packed_logits(model, batch)
        # Before: every product cast the fp32 residual stream itself, and the mask was built in fp32.
        monkeypatch.setattr(packed, "_compute_dtype", lambda hidden: None)
        torch.manual_seed(0)
        before = packed_logits(model, batch)
    assert seen == [torch.bfloat16, torch.float32]
    assert torch.equal(now, before)  # the same casts, made once: the same bf16 products, bit for bit


def test_fp32_packed_forward_casts_nothing():
    model = prepared("bert", "lora").eval()
    seen = []
    query = model.bert.encoder.layer[0].attention.self.query
    query.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    with torch.no_grad():
        packed_logits(model, inputs(ragged_batch(0)))
    assert seen == [torch.float32]
