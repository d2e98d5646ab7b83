"""Property-based tests of the input readers: read_questions, read_table and load_experiment.

For any input (arbitrary bytes, mutations of valid files, generated experiment documents) a reader
either returns valid data or raises a one-line LoralabError; valid question sets and TSV tables read
back exactly. The strategies and checks live in tests/properties.py, which
benchmarks/fuzz_readers.py runs with many more examples.
"""

import pytest

from properties import (CSV_SEEDS, EXPERIMENT_SEEDS, PROPERTIES, PropertyFailure, check_experiment_file,
                        check_question_file, check_questions, check_table_file, hypothesis_test, mutate)
from loralab.tasks.multiple_choice import Question

# Examples per property: 2,500 in all, about half a minute on two cores when nothing fails.
EXAMPLES = {
    "questions_arbitrary_bytes": 300,
    "questions_mutations": 300,
    "table_arbitrary_bytes": 300,
    "table_mutations": 250,
    "experiment_arbitrary_text": 300,
    "experiment_generated": 300,
    "experiment_mutations": 300,
    "questions_round_trip": 250,
    "table_tsv_round_trip": 200,
}


def test_every_property_has_a_budget():
    assert set(EXAMPLES) == set(PROPERTIES)


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_property(name):
    hypothesis_test(PROPERTIES[name], EXAMPLES[name])()


def test_mutations_start_from_valid_files():
    """A mutation is only telling if the file before it loads."""
    for data in CSV_SEEDS:
        check_question_file(data)
        check_table_file(data)
    for suffix, data in EXPERIMENT_SEEDS:
        check_experiment_file(data, suffix)


def test_mutations_do_what_they_say():
    data = b"id,prompt,A,B,answer\n1,q,x,y,A\n"
    assert mutate(data, [("dup_header_name", 2, 3)]).startswith(b"id,prompt,A,A,answer\n")
    assert mutate(data, [("swap_lines", 0, 1)]) == b"1,q,x,y,A\nid,prompt,A,B,answer\n"
    assert mutate(data, [("insert_bom", 0)]) == b"\xef\xbb\xbf" + data
    assert mutate(data, [("delimiter", b"\t", None)]) == data.replace(b",", b"\t")
    huge = mutate(data, [("huge_cell", 1, 1, "plain")])
    assert len(huge) > 200_000 and huge.startswith(b"id,prompt,A,B,answer\n1,xxx")
    assert mutate(b"base:\n  lr: 1\n", [("set_value", 1, b".inf")]) == b"base:\n  lr: .inf\n"


def test_the_checks_catch_invalid_questions():
    good = Question(id="1", prompt="q", letters=("A", "B"), options=("x", "y"), answer=0)
    check_questions([good], require_answer=True)
    for bad in (Question("1", "", ("A", "B"), ("x", "y"), 0),  # empty prompt
                Question("1", "q", ("A",), ("x",), 0),  # one option
                Question("1", "q", ("B", "A"), ("x", "y"), 0),  # letters out of order
                Question("1", "q", ("A", "B"), ("x", " y"), 0),  # unstripped option
                Question("1", "q", ("A", "B"), ("x", "y"), 2)):  # answer out of range
        with pytest.raises(PropertyFailure):
            check_questions([bad], require_answer=True)
