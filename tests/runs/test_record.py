"""Run records with fields of the wrong type, or from a later loralab, are refused in one line naming the field."""

import json

import pytest

from loralab.errors import LoralabError
from loralab.runs.record import FutureRecord, check_record, read_manifest_runs, read_record

GOOD = {"status": "completed", "loralab_version": "0.1.0", "task": "multiple-choice", "strategy": "lora",
        "config": {}, "hyperparameters": {}, "base_model": {"name": "minilm"}, "weights": "weights.safetensors",
        "peak_memory_mb": 900.5, "loss": [1.0, "NaN"], "valid": {"map@3": 0.5, "pearson": None, "path": "v.csv"}}


def test_a_good_record_passes():
    assert check_record(dict(GOOD), "run.json") == GOOD


@pytest.mark.parametrize("field,value", [
    ("base_model", "minilm"), ("config", "oops"), ("weights", 5), ("task", ["multiple-choice"]),
    ("peak_memory_mb", "lots"), ("valid", "good"), ("loss", 5), ("strategy", 7), ("loss", ["a"]),
    ("peak_memory_mb", True), ("head", [1]),
])
def test_a_field_of_the_wrong_type_is_named(field, value):
    with pytest.raises(LoralabError, match=f"run.json: field '{field}' is"):
        check_record({**GOOD, field: value}, "run.json")


def test_nested_fields_are_checked():
    with pytest.raises(LoralabError, match="'valid.map@3' is str"):
        check_record({**GOOD, "valid": {"map@3": "high"}}, "run.json")
    with pytest.raises(LoralabError, match="'base_model.name' is int"):
        check_record({**GOOD, "base_model": {"name": 5}}, "run.json")


def test_a_record_from_a_later_version_is_refused():
    with pytest.raises(FutureRecord, match="written by loralab 99.0.0, newer than this"):
        check_record({**GOOD, "loralab_version": "99.0.0"}, "run.json")
    check_record({**GOOD, "loralab_version": "0.0.9"}, "run.json")  # older ones keep loading


@pytest.mark.parametrize("text", ['{"a": ' + "9" * 5000 + "}", "[" * 200_000 + "]" * 200_000,
                                  '{"a": ' * 100_000 + "1" + "}" * 100_000])
def test_parser_limits_are_one_line_errors(tmp_path, text):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(LoralabError, match="not a readable JSON record"):
        read_record(tmp_path / "run.json")


@pytest.mark.parametrize("runs", ["oops", [5], [{"folder": 3}], [{"folder": "a", "labels": "x"}]])
def test_a_malformed_manifest_is_refused(tmp_path, runs):
    (tmp_path / "sweep.json").write_text(json.dumps({"runs": runs}))
    with pytest.raises(LoralabError, match="sweep.json: "):
        read_manifest_runs(tmp_path / "sweep.json")
