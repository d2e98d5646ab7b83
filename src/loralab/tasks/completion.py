"""The completion task (instruction tuning): a decoder learns to write a completion for a prompt.

A file is JSON Lines, one object per line, either `{"prompt": ..., "completion": ...}` or a chat,
`{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}`, whose
last message is the assistant's answer to learn; a chat is rendered with the tokenizer's chat
template when it has one. The loss is the cross-entropy of the completion's tokens only: the prompt
conditions the model but is not learned (as in Alpaca-style supervised fine-tuning). Evaluation is
that loss per completion token and its perplexity, exp(loss).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loralab.errors import LoralabError
from loralab.metrics import METRICS
from loralab.tasks.decoder_choice import cut_from_left, hidden_states, token_logits
from loralab.tasks.table import SUPPORTED, check_text, is_records, read_records, read_text
from loralab.validate import number

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    """One prompt and the completion to learn; `messages` when it came as a chat."""

    id: str
    prompt: str
    completion: str | None  # None: a file read for generation has no completions
    messages: tuple[tuple[str, str], ...] = ()  # (role, content), the completion being the last one's content


def _field(path, line: int, record: dict, name: str, required: bool) -> str | None:
    value = record.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise LoralabError(f"{path}, line {line}, field '{name}': expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise LoralabError(f"{path}, line {line}, field '{name}': empty")
    return check_text(value, f"{path}, line {line}, field '{name}'")


def _messages(path, line: int, value) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise LoralabError(f"{path}, line {line}, field 'messages': expected a list of at least two messages")
    out = []
    for i, message in enumerate(value):
        where = f"{path}, line {line}, field 'messages[{i}]'"
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise LoralabError(f"{where}: expected {{\"role\": one of {', '.join(ROLES)}, \"content\": a string}}")
        out.append((message["role"], check_text(message["content"], where)))
    if out[-1][0] != "assistant" or not out[-1][1].strip():
        raise LoralabError(f"{path}, line {line}, field 'messages': the last message must be the assistant's, not empty")
    return tuple(out)


def read_examples(path: str | Path, *, labelled: bool = True, limit: int | None = None,
                  split: str | None = None) -> list[Example]:
    """Read and validate prompts and completions (JSON Lines, a JSON array, Parquet or a datasets folder);
    problems name the file, line (row) and field."""
    number("limit", limit, integer=True, low=1, optional=True)
    if not is_records(Path(path)):
        read_text(path, what="a JSON Lines file of prompts and completions")  # a missing file said as such
        raise LoralabError(f"{path}: prompts and completions are read from {SUPPORTED.replace('CSV, TSV, ', '')}")
    examples = []
    for line, record in read_records(path, split=split):
        qid = str(record.get("id", line))
        if "messages" in record:
            messages = _messages(path, line, record["messages"])
            examples.append(Example(qid, "", messages[-1][1], messages))
        else:
            prompt = _field(path, line, record, "prompt", required=True)
            completion = _field(path, line, record, "completion", required=labelled)
            examples.append(Example(qid, prompt, completion))
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise LoralabError(f"{path}: no examples (expected one JSON object per line)")
    return examples


def render(example: Example, tokenizer) -> tuple[str, str]:
    """(prompt text, completion text); a chat through the tokenizer's chat template when it has one."""
    if not example.messages:
        return example.prompt, example.completion or ""
    messages = [{"role": role, "content": content} for role, content in example.messages]
    if getattr(tokenizer, "chat_template", None):
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        if full.startswith(prompt):
            return prompt, full[len(prompt):]
    # No template (or one that renders the answer differently in context): a plain transcript.
    prompt = "".join(f"{role}: {content}\n" for role, content in example.messages[:-1]) + "assistant:"
    return prompt, " " + example.messages[-1][1]


@dataclass(frozen=True)
class EncodedCompletion:
    """Prompt and completion token ids in one sequence; the loss reads positions from `prompt_length` on."""

    input_ids: tuple[int, ...]
    prompt_length: int

    @property
    def longest(self) -> int:
        return len(self.input_ids)

    num_tokens = longest


def encode(examples: Sequence[Example], tokenizer, max_length: int, source: str = "") -> list[EncodedCompletion]:
    """Token ids of prompt + completion (+ end of sequence); too long: the prompt is cut from the left
    first (the end of a prompt says what to write), then the completion from the right."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded = []
    for example in examples:
        prompt_text, completion_text = render(example, tokenizer)
        prompt = tokenizer(prompt_text, add_special_tokens=True)["input_ids"]
        completion = tokenizer.encode(completion_text, add_special_tokens=False) + eos if example.completion is not None else []
        completion = completion[: max_length - 1]
        prompt = cut_from_left(prompt, max_length - len(completion))
        encoded.append(EncodedCompletion(tuple(prompt) + tuple(completion), len(prompt)))
    return encoded


def collate(items: Sequence[EncodedCompletion], pad_id: int) -> dict[str, torch.Tensor]:
    """Right padding; `labels` holds the completion's ids and -100 on prompt and padding."""
    seq = max(item.longest for item in items)
    input_ids = torch.full((len(items), seq), pad_id, dtype=torch.long)  # (batch, seq)
    attention_mask = torch.zeros((len(items), seq), dtype=torch.long)
    labels = torch.full((len(items), seq), -100, dtype=torch.long)
    for b, item in enumerate(items):
        ids = torch.tensor(item.input_ids)
        input_ids[b, : len(ids)] = ids
        attention_mask[b, : len(ids)] = 1
        labels[b, item.prompt_length: len(ids)] = ids[item.prompt_length:]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def token_losses(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 packed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token cross-entropy of every completion token, the row each belongs to)."""
    hidden = hidden_states(model, batch["input_ids"], batch["attention_mask"], packed)  # (batch, seq, hidden)
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    rows, cols = (targets != -100).nonzero(as_tuple=True)
    logits = token_logits(model, hidden[rows, cols]).float()  # (tokens, vocab): completion positions only
    return torch.nn.functional.cross_entropy(logits, targets[rows, cols], reduction="none"), rows


class Completion:
    """Prompt -> completion with a causal language model; loss on the completion's tokens only."""

    name = "completion"
    metrics = ("perplexity", "loss")
    model_class = "AutoModelForCausalLM"
    scoring = "tokens"

    def read(self, path, config=None, *, labelled: bool = True, limit: int | None = None) -> list[Example]:
        return read_examples(path, labelled=labelled, limit=limit, split=getattr(config, "split", None))

    def label_space(self, examples, source: str = "") -> dict[str, Any]:
        return {}

    def check_labels(self, examples, space=None, source: str = "") -> list[int]:
        return [0] * len(examples)

    def model_kwargs(self, space) -> dict[str, Any]:
        return {}

    def encode(self, examples, tokenizer, max_length: int, space=None, source: str = "") -> list[EncodedCompletion]:
        return encode(examples, tokenizer, max_length, source)

    def collate(self, items, pad_id: int) -> dict[str, torch.Tensor]:
        return collate(items, pad_id)

    def loss(self, model, batch, packed: bool) -> torch.Tensor:
        losses, _ = token_losses(model, batch, packed)
        return losses.mean()

    def outputs(self, model, batch, packed: bool) -> list[list[float]]:
        losses, rows = token_losses(model, batch, packed)
        size = batch["input_ids"].shape[0]
        total = torch.zeros(size, dtype=losses.dtype).index_add(0, rows.cpu(), losses.detach().cpu())
        count = torch.zeros(size, dtype=losses.dtype).index_add(0, rows.cpu(), torch.ones_like(losses).cpu())
        return [[float(t), float(c)] for t, c in zip(total, count)]

    def targets(self, items) -> list[int]:
        return [0] * len(items)

    def scores(self, outputs, targets) -> dict[str, float]:
        return {name: METRICS[name](outputs, targets) for name in self.metrics} | {
            "examples": len(outputs), "tokens": int(sum(o[1] for o in outputs))}

    def predictions(self, examples: Sequence[Example], outputs, space=None):
        rows = [[e.id, f"{o[0] / o[1]:.6f}" if o[1] else "nan", int(o[1])] for e, o in zip(examples, outputs)]
        return ["id", "loss", "tokens"], rows, [], []


TASK = Completion()
