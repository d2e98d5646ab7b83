"""Helpers for tests that need real run folders: a tiny BERT saved on disk, and short runs on it.

The tiny model has MiniLM's vocabulary, so real science-exam questions tokenize into it; one
optimizer step at a large learning rate moves its weights far enough that an adapter visibly
changes the outputs, which keeps "merged equals adapted" from passing on a no-op.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import torch
import transformers

from conftest import SCIENCE
from loralab.runs.config import RunConfig
from loralab.tasks.multiple_choice import collate, encode
from loralab.tasks.multiple_choice import read_questions
from loralab.runs import run
from loralab.strategies import StrategyConfig
from loralab.tasks.multiple_choice import choice_logits
from loralab.training import TrainConfig


def save_tiny_bert(folder: Path, tokenizer, seed: int = 0, hidden: int = 32) -> Path:
    """A 2-layer BERT with a multiple-choice head and MiniLM's tokenizer, saved as a model folder."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=2 * hidden,
                                     initializer_range=0.3)  # logits of order 1, so atol=1e-5 is strict
    model = transformers.BertForMultipleChoice(config)
    with torch.no_grad():  # a pretrained pooler, as most checkpoints ship (an untrained one would train with the head)
        model.bert.pooler.dense.bias.fill_(0.02)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_decoder(folder: Path, tokenizer, kind: str = "llama", seed: int = 0) -> Path:
    """A 2-layer causal LM (Llama or GPT-2) with the tokenizer's vocabulary, saved as a model folder."""
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if kind == "llama":
        config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                          pad_token_id=pad, tie_word_embeddings=True, initializer_range=0.2)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=512,
                                         pad_token_id=pad, bos_token_id=tokenizer.eos_token_id,
                                         eos_token_id=tokenizer.eos_token_id, initializer_range=0.2)
        model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def short_run(out: Path, model: str | Path, strategy: StrategyConfig, *, lr: float = 0.05, steps: int = 1,
              adapter: Path | None = None, theta_lr: float | None = None) -> dict:
    """`steps` optimizer steps on 4 science-exam questions; returns the run record."""
    training = TrainConfig(lr=lr, batch_size=2, max_steps=steps, max_length=32, warmup_ratio=0.0, seed=0,
                           theta_lr=theta_lr)
    config = RunConfig(train=str(SCIENCE / "train.csv"), model=str(model), strategy=strategy, training=training,
                       train_limit=4, device="cpu")
    from loralab.runs.peft import read_peft_adapter

    return run(config, out, progress=False, log=lambda _: None,
               adapter=read_peft_adapter(adapter) if adapter is not None else None)


def question_batch(tokenizer, n: int = 4, max_length: int = 32) -> dict[str, torch.Tensor]:
    """Real questions from science-exam/valid.csv as one padded batch (batch, choices, seq)."""
    items = encode(read_questions(SCIENCE / "valid.csv", limit=n), tokenizer, max_length)
    return collate(items, tokenizer.pad_token_id)


@torch.no_grad()
def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    return choice_logits(model, batch)


def random_questions(n=12, seed=0):
    """`n` encoded questions of 4 options with random token ids, lengths 6-10."""
    import torch

    from loralab.tasks.multiple_choice import EncodedQuestion
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 6 + i % 5
        ids = tuple(tuple(torch.randint(5, 100, (length,), generator=g).tolist()) for _ in range(4))
        out.append(EncodedQuestion({"input_ids": ids}, label=i % 4))
    return out


def copy_adapters(ours, theirs):
    """Give peft's adapters the values of loralab's, module by module (the same A and B in both)."""
    ours_state = dict(ours.named_parameters())
    with torch.no_grad():
        for name, module in theirs.named_modules():
            if hasattr(module, "lora_A") and isinstance(module.lora_A, torch.nn.ModuleDict):
                inner = name.removeprefix("base_model.model.")
                module.lora_A["default"].weight.copy_(ours_state[f"{inner}.lora_A"])
                module.lora_B["default"].weight.copy_(ours_state[f"{inner}.lora_B"])


WORDS = ["stone", "river", "cloud", "table", "green", "seven", "paper", "train", "glass", "night"]


def easy_questions(path: Path, n: int, seed: int) -> Path:
    """A multiple-choice CSV a tiny model learns in a few steps: the right option always contains "apple"."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt", "A", "B", "C", "D", "answer"])
        for i in range(n):
            options = [f"{rng.choice(WORDS)} {rng.choice(WORDS)}" for _ in range(4)]
            right = rng.randrange(4)
            options[right] = f"apple {rng.choice(WORDS)}"
            writer.writerow([i, "which one is the fruit?", *options, "ABCD"[right]])
    return path
