"""Multiple choice scored by a decoder: the prompt, the letters, padding, and both scorings checked by hand."""

import pytest
import torch

from conftest import CAUSAL_LM, SCIENCE, tiny_model
from loralab.errors import LoralabError
from loralab.tasks import get_task, resolve_scoring
from loralab.tasks.decoder_choice import (LETTER, LIKELIHOOD, collate_continuations, collate_letters, encode_continuations,
                                          encode_letters, letter_logits, likelihood_scores)
from loralab.tasks.multiple_choice import Question, read_questions

VOCAB = 49152  # SmolLM2's vocabulary, so its tokenizer's ids fit the tiny decoders


def tiny_decoder(kind: str, seed: int = 0):
    from conftest import TINY

    config_class, settings, classes = TINY[kind]
    torch.manual_seed(seed)
    size = dict(n_positions=512) if kind == "gpt2" else {}
    model = classes[CAUSAL_LM](config_class(**{**settings, "vocab_size": VOCAB, **size}))
    return model.eval()


@pytest.fixture(scope="module")
def questions(science_exam):
    return read_questions(SCIENCE / "valid.csv", limit=6)


def test_prompt_lists_the_options_and_ends_with_the_cue(questions, smollm2_tokenizer):
    item = encode_letters(questions[:1], smollm2_tokenizer, 512)[0]
    text = smollm2_tokenizer.decode(item.input_ids)
    q = questions[0]
    assert text.startswith(f"Question: {q.prompt}")
    for letter, option in zip("ABCDE", q.options):
        assert f"\n{letter}. {option}" in text
    assert text.endswith("\nAnswer:")
    assert [smollm2_tokenizer.decode([t]) for t in item.letters] == [" A", " B", " C", " D", " E"]
    assert item.label == q.answer


def test_a_letter_the_tokenizer_splits_is_refused():
    class Splitting:
        def encode(self, text, add_special_tokens=False):
            return [1, 2] if text == " C" else [7]

    q = Question("1", "Which?", ("A", "B", "C"), ("x", "y", "z"), 0)
    with pytest.raises(LoralabError, match=r"' C' to be one token.*likelihood"):
        encode_letters([q], Splitting(), 64)


def test_a_long_question_is_cut_from_the_left_and_keeps_options_and_cue(smollm2_tokenizer):
    q = Question("1", "word " * 400 + "which is right?", ("A", "B"), ("yes", "no"), 1)
    item = encode_letters([q], smollm2_tokenizer, 64)[0]
    assert item.longest == len(item.input_ids) <= 64
    text = smollm2_tokenizer.decode(item.input_ids)
    assert text.endswith("which is right?\nA. yes\nB. no\nAnswer:")


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_left_padding_scores_each_question_as_if_alone(kind, questions, smollm2_tokenizer):
    """Left padding and position ids from the mask: a batch gives each question its unpadded scores."""
    model = tiny_decoder(kind)
    items = encode_letters(questions, smollm2_tokenizer, 512)
    assert len({item.longest for item in items}) > 1  # the batch really is padded
    with torch.no_grad():
        together = letter_logits(model, collate_letters(items, pad_id=2))
        alone = torch.cat([letter_logits(model, collate_letters([item], pad_id=2)) for item in items])
        # and by hand: the full vocabulary's logits at the prompt's last token, read at the letters
        by_hand = torch.stack([model(torch.tensor([item.input_ids])).logits[0, -1, list(item.letters)] for item in items])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(together, by_hand, atol=1e-5, rtol=0)


def test_likelihood_is_the_mean_log_probability_of_the_option_tokens(questions, smollm2_tokenizer):
    model = tiny_decoder("llama")
    items = encode_continuations(questions[:3], smollm2_tokenizer, 512)
    with torch.no_grad():
        scores = likelihood_scores(model, collate_continuations(items, pad_id=2))
        for b, item in enumerate(items):
            for c, (ids, start) in enumerate(zip(item.sequences, item.starts)):
                log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)  # (seq, vocab)
                expected = torch.stack([log_probs[t - 1, ids[t]] for t in range(start, len(ids))]).mean()
                torch.testing.assert_close(scores[b, c], expected, atol=1e-5, rtol=0)


def test_permuting_moves_the_texts_not_the_letters_and_the_label_follows(questions, smollm2_tokenizer):
    items = encode_letters(questions, smollm2_tokenizer, 512)
    shuffled = LETTER.permuted(items, torch.Generator().manual_seed(0))
    assert any(s.options != i.options for s, i in zip(shuffled, items))
    for s, i in zip(shuffled, items):
        assert s.letters == i.letters and s.markers == i.markers
        assert s.options[s.label] == i.options[i.label]
        assert sorted(s.options) == sorted(i.options)


def test_training_with_letters_lowers_the_loss(questions, smollm2_tokenizer):
    model = tiny_decoder("llama").train()
    batch = collate_letters(encode_letters(questions, smollm2_tokenizer, 512), pad_id=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = LETTER.loss(model, batch, packed=False)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7


def test_scoring_fits_the_model_kind():
    assert resolve_scoring("multiple-choice", "auto", decoder=True) == "letter"
    assert resolve_scoring("multiple-choice", "auto", decoder=False) == "head"
    assert get_task("multiple-choice", "likelihood") is LIKELIHOOD
    with pytest.raises(LoralabError, match="needs an encoder"):
        resolve_scoring("multiple-choice", "head", decoder=True)
    with pytest.raises(LoralabError, match="needs a decoder"):
        resolve_scoring("multiple-choice", "letter", decoder=False)
    with pytest.raises(LoralabError, match="completion task needs a decoder"):
        resolve_scoring("completion", "auto", decoder=False)
