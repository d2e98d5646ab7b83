"""Multiple choice with a decoder language model: the same questions, scored by next-token probabilities.

Two standard ways (both in, e.g., the Open LLM Leaderboard's harness), selectable per run:

- **letter** scoring: one prompt lists the question and its options as `A. ...` lines and ends with
  `Answer:`; one forward pass, and an option's score is the next-token logit of its letter
  (` A`, ` B`, ...). Training is cross-entropy over those letters' logits at that one position, so
  the loss is on the answer only. The options' order can be drawn anew each epoch, so the model
  learns the answer and not its position.
- **likelihood** scoring: each option is a continuation of `Question: ...\nAnswer:`, scored by its
  length-normalised log-likelihood, mean over its tokens of log p(token | everything before)
  (one sequence per option). Training is cross-entropy over those scores.

Both are read and scored as the encoder task (`tasks.multiple_choice`): same files, MAP@3, same
predictions; only the encoding and the forward differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from loralab.errors import LoralabError
from loralab.models import packed_decoder
from loralab.tasks.multiple_choice import MultipleChoice, Question

PROMPT = "Question: {question}"
OPTION = "\n{letter}."
CUE = "\nAnswer:"


# ---- the decoder's forward, on the positions that are scored only ---------------------------------

def hidden_states(model: torch.nn.Module, input_ids, attention_mask, packed: bool = True) -> torch.Tensor:
    """The last layer's hidden states (batch, seq, hidden); positions count real tokens only, so left
    padding (letter scoring) gives every real token the position it has unpadded. `packed` runs the
    models `loralab.models.packed_decoder` supports on their real tokens only (the same result)."""
    if packed and packed_decoder.supports(model, input_ids.shape[-1]):
        return packed_decoder.packed_hidden_states(model, input_ids, attention_mask)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (batch, seq)
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids).last_hidden_state


def token_logits(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The output layer on the given hidden states only: (..., vocab). Computing it for every position
    of every sequence would cost a (tokens x vocabulary) matrix, most of it never read."""
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)  # Gemma 2 and 3
    return torch.tanh(logits / cap) * cap if cap else logits


# ---- letter scoring ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LetterPrompt:
    """A question's prompt as token-id pieces, so the options can be put in another order cheaply."""

    question: tuple[int, ...]  # "Question: ..." (with the tokenizer's leading special tokens)
    markers: tuple[tuple[int, ...], ...]  # per position: "\nA.", "\nB.", ...
    options: tuple[tuple[int, ...], ...]  # per option, in the current order: " option text"
    cue: tuple[int, ...]  # "\nAnswer:"
    letters: tuple[int, ...]  # per position: the token id of " A", " B", ...
    label: int  # the correct option's position, -1 when unknown

    @property
    def input_ids(self) -> list[int]:
        ids = list(self.question)
        for marker, option in zip(self.markers, self.options):
            ids += marker + option
        return ids + list(self.cue)

    @property
    def longest(self) -> int:
        return len(self.question) + sum(map(len, self.markers)) + sum(map(len, self.options)) + len(self.cue)

    num_tokens = longest

    @property
    def num_choices(self) -> int:
        return len(self.options)

    def permuted(self, order: Sequence[int]) -> "LetterPrompt":
        """The same question with option `order[i]` shown at position i."""
        label = order.index(self.label) if self.label >= 0 else -1
        return replace(self, options=tuple(self.options[i] for i in order), label=label)


def letter_token(tokenizer, letter: str) -> int:
    """The one token a model writes for ` A` after `Answer:`; an error when the tokenizer splits it."""
    ids = tokenizer.encode(f" {letter}", add_special_tokens=False)
    if len(ids) != 1:
        raise LoralabError(f"letter scoring needs ' {letter}' to be one token, but this tokenizer splits it into "
                           f"{len(ids)} ({ids}); use --scoring likelihood")
    return ids[0]


def cut_from_left(ids: list[int], keep: int) -> list[int]:
    """At most `keep` ids: the first (a start-of-text token where the tokenizer adds one) and the last
    `keep - 1`; the end of a prompt says what to answer, so its beginning goes first."""
    if len(ids) <= keep:
        return ids
    return ids[:1] + ids[len(ids) - keep + 1:] if keep > 1 else ids[:1]


def _fit(question: list[int], options: list[list[int]], fixed: int, max_length: int, source: str, index: int):
    """Cut the question from the left, then the longest options from the right, until the prompt fits."""
    room = max_length - fixed
    if room < len(options) + 1:
        raise LoralabError(f"{source}: question {index + 1} cannot fit max_length={max_length} even with its text cut; "
                           "raise --max-length")
    over = len(question) + sum(map(len, options)) - room
    if over > 0:
        question = cut_from_left(question, max(1, len(question) - over))
        over = len(question) + sum(map(len, options)) - room
    while over > 0:
        longest = max(range(len(options)), key=lambda i: len(options[i]))
        cut = min(over, len(options[longest]) - 1)
        if cut <= 0:
            break
        options[longest] = options[longest][: len(options[longest]) - cut]
        over -= cut
    return question, options


def encode_letters(questions: Sequence[Question], tokenizer, max_length: int, source: str = "") -> list[LetterPrompt]:
    width = max(len(q.options) for q in questions)
    letter_ids = tuple(letter_token(tokenizer, chr(ord("A") + i)) for i in range(width))
    cue = tuple(tokenizer.encode(CUE, add_special_tokens=False))
    encoded = []
    for index, q in enumerate(questions):
        # The option at position i is always shown as the i-th letter; shuffling moves texts, not letters.
        shown = [chr(ord("A") + i) for i in range(len(q.options))]
        markers = tuple(tuple(tokenizer.encode(OPTION.format(letter=letter), add_special_tokens=False))
                        for letter in shown)
        question = tokenizer(PROMPT.format(question=q.prompt), add_special_tokens=True)["input_ids"]
        options = [tokenizer.encode(f" {text}", add_special_tokens=False) for text in q.options]
        question, options = _fit(list(question), options, len(cue) + sum(map(len, markers)), max_length, source, index)
        encoded.append(LetterPrompt(tuple(question), markers, tuple(map(tuple, options)), cue, letter_ids[: len(shown)],
                                    -1 if q.answer is None else q.answer))
    return encoded


def collate_letters(items: Sequence[LetterPrompt], pad_id: int) -> dict[str, torch.Tensor]:
    """Left padding: every prompt ends at the last position, where its letters are read."""
    seq, choices = max(item.longest for item in items), max(item.num_choices for item in items)
    input_ids = torch.full((len(items), seq), pad_id, dtype=torch.long)  # (batch, seq)
    attention_mask = torch.zeros((len(items), seq), dtype=torch.long)
    letters = torch.zeros((len(items), choices), dtype=torch.long)  # (batch, choices)
    choice_mask = torch.zeros((len(items), choices), dtype=torch.bool)
    for b, item in enumerate(items):
        ids = item.input_ids
        input_ids[b, seq - len(ids):] = torch.tensor(ids)
        attention_mask[b, seq - len(ids):] = 1
        letters[b, : item.num_choices] = torch.tensor(item.letters)
        letters[b, item.num_choices:] = item.letters[0]  # a filler; its score is masked
        choice_mask[b, : item.num_choices] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "letters": letters,
            "choice_mask": choice_mask, "labels": torch.tensor([item.label for item in items])}


def letter_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor], packed: bool = True) -> torch.Tensor:
    """(batch, choices): the next-token logits of the options' letters after `Answer:`."""
    last = hidden_states(model, batch["input_ids"], batch["attention_mask"], packed)[:, -1]  # (batch, hidden)
    logits = token_logits(model, last)  # (batch, vocab)
    scores = logits.gather(1, batch["letters"])  # (batch, choices)
    return scores.masked_fill(~batch["choice_mask"], torch.finfo(scores.dtype).min)


# ---- likelihood scoring ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Continuations:
    """A question's options as continuations of one prompt: one id sequence per option."""

    sequences: tuple[tuple[int, ...], ...]  # prompt + option, per option
    starts: tuple[int, ...]  # where each option's own tokens begin
    label: int

    @property
    def longest(self) -> int:
        return max(map(len, self.sequences))

    @property
    def num_tokens(self) -> int:
        return sum(map(len, self.sequences))

    @property
    def num_choices(self) -> int:
        return len(self.sequences)


def encode_continuations(questions: Sequence[Question], tokenizer, max_length: int,
                         source: str = "") -> list[Continuations]:
    encoded = []
    for index, q in enumerate(questions):
        prompt = tokenizer(PROMPT.format(question=q.prompt) + CUE, add_special_tokens=True)["input_ids"]
        options = [tokenizer.encode(f" {text}", add_special_tokens=False) or [tokenizer.eos_token_id]
                   for text in q.options]
        longest = max(map(len, options))
        if longest >= max_length:  # keep one prompt token at least; an option is cut at its end
            options = [o[: max_length - 1] for o in options]
            longest = max_length - 1
        prompt = cut_from_left(prompt, max_length - longest)
        encoded.append(Continuations(tuple(tuple(prompt) + tuple(o) for o in options),
                                     tuple(len(prompt) for _ in options), -1 if q.answer is None else q.answer))
    return encoded


def collate_continuations(items: Sequence[Continuations], pad_id: int) -> dict[str, torch.Tensor]:
    """Right padding, (batch, choices, seq); `scored` marks the positions whose next token is an option's."""
    seq, choices = max(item.longest for item in items), max(item.num_choices for item in items)
    input_ids = torch.full((len(items), choices, seq), pad_id, dtype=torch.long)  # (batch, choices, seq)
    attention_mask = torch.zeros((len(items), choices, seq), dtype=torch.long)
    scored = torch.zeros((len(items), choices, seq), dtype=torch.bool)
    choice_mask = torch.zeros((len(items), choices), dtype=torch.bool)
    for b, item in enumerate(items):
        for c in range(choices):
            ids = item.sequences[min(c, item.num_choices - 1)]  # a filler repeats the last option; masked below
            input_ids[b, c, : len(ids)] = torch.tensor(ids)
            attention_mask[b, c, : len(ids)] = 1
            start = item.starts[min(c, item.num_choices - 1)]
            scored[b, c, start - 1: len(ids) - 1] = True  # position t predicts token t + 1
        choice_mask[b, : item.num_choices] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "scored": scored,
            "choice_mask": choice_mask, "labels": torch.tensor([item.label for item in items])}


def likelihood_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor], packed: bool = True) -> torch.Tensor:
    """(batch, choices): each option's mean log-probability per token."""
    batch_size, choices, seq = batch["input_ids"].shape
    ids = batch["input_ids"].view(-1, seq)  # (batch * choices, seq)
    hidden = hidden_states(model, ids, batch["attention_mask"].view(-1, seq), packed)
    scored = batch["scored"].view(-1, seq)
    rows, cols = scored.nonzero(as_tuple=True)  # the positions whose next token belongs to an option
    log_probs = torch.log_softmax(token_logits(model, hidden[rows, cols]).float(), dim=-1)  # (tokens, vocab)
    token = log_probs.gather(1, ids[rows, cols + 1].unsqueeze(1)).squeeze(1)  # (tokens,)
    total = torch.zeros(ids.shape[0], dtype=token.dtype, device=token.device).index_add(0, rows, token)
    scores = (total / scored.sum(-1).clamp(min=1)).view(batch_size, choices)
    return scores.masked_fill(~batch["choice_mask"], torch.finfo(scores.dtype).min)


# ---- the two tasks ---------------------------------------------------------------------------------

class DecoderMultipleChoice(MultipleChoice):
    """Multiple choice read and scored as the encoder task, with a decoder's own way of scoring options."""

    model_class = "AutoModelForCausalLM"

    def __init__(self, scoring: str, encode, collate, choice_scores):
        self.scoring = scoring
        self._encode, self._collate, self._scores = encode, collate, choice_scores

    def encode(self, examples, tokenizer, max_length: int, space=None, source: str = "") -> list[Any]:
        return self._encode(examples, tokenizer, max_length, source)

    def collate(self, items, pad_id: int) -> dict[str, torch.Tensor]:
        return self._collate(items, pad_id)

    def loss(self, model, batch, packed: bool) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self._scores(model, batch, packed).float(), batch["labels"])

    def outputs(self, model, batch, packed: bool) -> list[list[float]]:
        scores = self._scores(model, batch, packed).float().cpu()
        return [row[: int(mask.sum())].tolist() for row, mask in zip(scores, batch["choice_mask"].cpu())]

    def permuted(self, items: Sequence[Any], generator: torch.Generator) -> list[Any]:
        """Each question's options in a new random order (letter scoring); other scorings are order-free."""
        if self.scoring != "letter":
            return list(items)
        return [item.permuted(torch.randperm(item.num_choices, generator=generator).tolist()) for item in items]


LETTER = DecoderMultipleChoice("letter", encode_letters, collate_letters, letter_logits)
LIKELIHOOD = DecoderMultipleChoice("likelihood", encode_continuations, collate_continuations, likelihood_scores)
