"""Names match on dot boundaries only."""

import pytest

from loralab.names import has_prefix, has_suffix


@pytest.mark.parametrize("name,prefix,expected", [
    ("classifier", "classifier", True),
    ("classifier.weight", "classifier", True),
    ("classifier2.weight", "classifier", False),
    ("pre_classifier.weight", "classifier", False),
    ("bert.pooler.dense", "bert.pooler", True),
    ("bert", "bert.pooler", False),
])
def test_has_prefix(name, prefix, expected):
    assert has_prefix(name, prefix) is expected


@pytest.mark.parametrize("name,suffix,expected", [
    ("query", "query", True),
    ("encoder.layer.0.attention.self.query", "attention.self.query", True),
    ("encoder.layer.0.attention.self.query", "query", True),
    ("encoder.layer.0.attention.self.key_query", "query", False),
    ("layer.0.attn.c_attn", "attn", False),
    ("self.query.lora_A", "query", False),
])
def test_has_suffix(name, suffix, expected):
    assert has_suffix(name, suffix) is expected
