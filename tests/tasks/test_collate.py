"""Multiple-choice questions collated into padded batches."""

from loralab.tasks.multiple_choice import collate, encode
from loralab.tasks.multiple_choice import Question


def questions():
    return [
        Question("1", "What is water made of?", ("A", "B", "C"), ("hydrogen and oxygen", "salt", "iron"), 0),
        Question("2", "Which planet is the largest of all the planets in the solar system?",
                 ("A", "B", "C", "D", "E"), ("Mars", "Jupiter", "Venus", "Earth", "Mercury"), 1),
    ]


def test_batches_pad_to_the_longest_sequence_and_widest_question(minilm_tokenizer):
    items = encode(questions(), minilm_tokenizer, max_length=64)
    batch = collate(items, minilm_tokenizer.pad_token_id)
    longest = max(item.longest for item in items)
    assert batch["input_ids"].shape == (2, 5, longest)  # (batch, choices, seq): no padding past the longest
    assert batch["choice_mask"].tolist() == [[True, True, True, False, False], [True] * 5]
    assert batch["labels"].tolist() == [0, 1]
    # every real token is attended to, every pad is not
    lengths = [[len(ids) for ids in item.features["input_ids"]] for item in items]
    assert batch["attention_mask"][0, :3].sum(-1).tolist() == lengths[0]
    assert batch["attention_mask"][1].sum(-1).tolist() == lengths[1]


def test_truncation_respects_max_length(minilm_tokenizer):
    items = encode(questions(), minilm_tokenizer, max_length=8)
    assert max(item.longest for item in items) == 8
