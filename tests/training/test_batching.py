"""Length-grouped, seeded batches."""

import torch

from loralab.tasks.multiple_choice import Question, collate, encode
from loralab.training.batching import batches


def questions():
    return [
        Question("1", "What is water made of?", ("A", "B", "C"), ("hydrogen and oxygen", "salt", "iron"), 0),
        Question("2", "Which planet is the largest of all the planets in the solar system?",
                 ("A", "B", "C", "D", "E"), ("Mars", "Jupiter", "Venus", "Earth", "Mercury"), 1),
    ]


def test_shuffled_batches_are_seeded_and_cover_every_question(minilm_tokenizer):
    items = encode(questions() * 5, minilm_tokenizer, max_length=32)

    def labels(seed):
        g = torch.Generator().manual_seed(seed)
        return [b["labels"].tolist() for b in batches(items, 3, lambda b: collate(b, 0), shuffle=True, generator=g, group_by_length=True)]

    assert labels(1) == labels(1)
    assert sorted(sum(labels(1), [])) == sorted([0, 1] * 5)
