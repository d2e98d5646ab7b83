"""Property-based tests of the input readers: read_questions, read_table, load_experiment, the
classification reader read_examples with infer_task, the completion reader (JSON Lines, chats), and
run.json and sweep.json as every command and report reads them.

For any input (arbitrary bytes, mutations of valid files, generated experiment documents) a reader
either returns valid data or raises a one-line LoralabError; valid question sets, TSV tables and
classification/regression files (TSV with quoting off, CSV) read back exactly. The strategies and checks live in tests/properties.py, which
benchmarks/fuzz_readers.py runs with many more examples.
"""

import pytest

from properties import (CLASS_CONFIGS, CLASS_SEEDS, CSV_SEEDS, EXPERIMENT_SEEDS, PROPERTIES, PropertyFailure,
                        check_classification_file, check_examples, check_experiment_file, check_question_file,
                        check_questions, check_table_file, hypothesis_test, mutate, mutate_class, write)
from loralab.errors import LoralabError
from loralab.tasks import TaskConfig
from loralab.tasks.classification import Example, read_examples
from loralab.tasks.multiple_choice import Question

# Examples per property: 3,950 in all, well under a minute on two cores when nothing fails.
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
    "class_arbitrary_bytes": 300,
    "class_mutations": 200,
    "class_round_trip": 250,
    "completion_jsonl": 250,
    "run_record": 250,
    "sweep_manifest": 200,
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
    assert len(CLASS_SEEDS) >= 7  # the inline ones; real GLUE files add up to six more
    for suffix, data, config in CLASS_SEEDS:
        check_classification_file(data, suffix, CLASS_CONFIGS[config])
        assert read_examples(write("seed" + suffix, data), CLASS_CONFIGS[config])  # loads, labels and all


def test_mutations_do_what_they_say():
    data = b"id,prompt,A,B,answer\n1,q,x,y,A\n"
    assert mutate(data, [("dup_header_name", 2, 3)]).startswith(b"id,prompt,A,A,answer\n")
    assert mutate(data, [("swap_lines", 0, 1)]) == b"1,q,x,y,A\nid,prompt,A,B,answer\n"
    assert mutate(data, [("insert_bom", 0)]) == b"\xef\xbb\xbf" + data
    assert mutate(data, [("delimiter", b"\t", None)]) == data.replace(b",", b"\t")
    huge = mutate(data, [("huge_cell", 1, 1, "plain")])
    assert len(huge) > 200_000 and huge.startswith(b"id,prompt,A,B,answer\n1,xxx")
    assert mutate(b"base:\n  lr: 1\n", [("set_value", 1, b".inf")]) == b"base:\n  lr: .inf\n"
    tsv = b"sentence\tlabel\na b\t1\n"
    assert mutate_class(tsv, [("tsv_cell", 1, 1, b"x")]) == b"sentence\tlabel\na b\tx\n"
    assert mutate_class(tsv, [("tsv_dup_header_name", 0, 1)]) == b"sentence\tsentence\na b\t1\n"
    assert mutate_class(tsv, [("swap_delimiters",)]) == b"sentence,label\na b,1\n"
    assert mutate_class(b"a,b\n", [("swap_delimiters",)]) == b"a\tb\n"
    assert mutate_class(tsv, [("tsv_huge_cell", 1, 0, "plain")]).startswith(b"sentence\tlabel\nxxx")
    assert mutate_class(data, [("insert_bom", 0)]) == mutate(data, [("insert_bom", 0)])  # the CSV operations too


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


def test_the_checks_catch_invalid_examples():
    path = write("checked.tsv", b"sentence1\tsentence2\tlabel\na\tb\t1\n")
    good = Example(id="0", text="a", text_pair="b", label="1", line=2)
    check_examples([good], path, None, labelled=True)
    for bad in (Example("0", "", "b", "1", 2),  # empty text
                Example("0", " a", "b", "1", 2),  # unstripped text
                Example("0", "a", None, "1", 2),  # the file has a pair column
                Example("0", "a", "b", None, 2),  # no label, read as labelled
                Example("0", "a", "b", "", 2)):  # empty label
        with pytest.raises(PropertyFailure):
            check_examples([bad], path, None, labelled=True)
    with pytest.raises(PropertyFailure):  # a pair made up where the configuration names a single text
        check_examples([good], path, TaskConfig(text="sentence1"), labelled=True)
    with pytest.raises(PropertyFailure):  # rows out of order
        check_examples([good, good], path, None, labelled=True)


def test_a_one_column_csv_with_cr_line_ends_keeps_its_tabs(tmp_path):
    """A valid one-column CSV (old Mac line ends) whose cell holds a tab: class_round_trip does not
    generate it until this passes."""
    path = tmp_path / "texts.csv"
    path.write_bytes(b"sentence\ra\tb\r")
    assert read_examples(path, labelled=False) == [Example("0", "a\tb", None, None, 2)]
