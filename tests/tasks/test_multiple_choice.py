import pytest

from conftest import DATA
from loralab.tasks.multiple_choice import read_questions
from loralab.errors import LoralabError

ALL_FILES = sorted(DATA.glob("*/*.csv")) if DATA.is_dir() else []


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shared_multiple_choice_file_loads(path):
    questions = read_questions(path)
    assert len(questions) > 100
    for q in questions:
        assert 2 <= len(q.options) <= 5 and all(q.options)
        assert q.answer is not None and 0 <= q.answer < len(q.options)


def test_columns_are_read_by_name(science_exam):
    # valid.csv is published with header id,prompt,C,E,D,B,A,answer
    first = read_questions(science_exam / "valid.csv", limit=1)[0]
    assert first.letters == ("A", "B", "C", "D", "E")
    assert first.options[first.letters.index("B")].startswith("McKenzie is primarily remembered")
    assert first.answer_letter == "B"


def write(tmp_path, text, name="q.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_empty_option_cells_drop_that_option(tmp_path):
    path = write(tmp_path, "id,prompt,A,B,C,D,E,answer\n7,Q?,a,,c,d,,D\n")
    (q,) = read_questions(path)
    assert q.letters == ("A", "C", "D") and q.options == ("a", "c", "d") and q.answer_letter == "D"


def test_two_option_sets_and_any_order(tmp_path):
    path = write(tmp_path, "answer,B,prompt,A\nA,no,Is it?,yes\n")
    (q,) = read_questions(path)
    assert q.options == ("yes", "no") and q.answer == 0 and q.id == "0"


def test_prediction_files_need_no_answer(tmp_path):
    path = write(tmp_path, "id,prompt,A,B\n1,Q?,a,b\n")
    assert read_questions(path, require_answer=False)[0].answer is None
    with pytest.raises(LoralabError, match="answer"):
        read_questions(path)


BAD = {
    "missing column": ("id,prompt,A,B,C\n1,Q,a,b,c\n", r"q\.csv: missing column\(s\) answer"),
    "no prompt column": ("id,question,A,B,answer\n1,Q,a,b,A\n", r"q\.csv: missing column\(s\) prompt"),
    "answer names an empty option": ("id,prompt,A,B,C,answer\n1,Q,a,b,,C\n", r"q\.csv, row 2, field 'answer': 'C'"),
    "answer is not a letter": ("id,prompt,A,B,answer\n1,Q,a,b,A\n2,Q,a,b,7\n", r"q\.csv, row 3, field 'answer'"),
    "empty prompt": ("id,prompt,A,B,answer\n1,  ,a,b,A\n", r"q\.csv, row 2, field 'prompt': empty"),
    "ragged row": ("id,prompt,A,B,answer\n1,Q,a,A\n", r"q\.csv, row 2: has 4 fields"),
    "empty file": ("", r"q\.csv: the file is empty"),
}


@pytest.mark.parametrize("text,message", BAD.values(), ids=BAD.keys())
def test_bad_input_names_file_row_and_field(tmp_path, text, message):
    with pytest.raises(LoralabError, match=message):
        read_questions(write(tmp_path, text))


def test_unreadable_files(tmp_path):
    with pytest.raises(LoralabError, match="not found"):
        read_questions(tmp_path / "absent.csv")
    binary = tmp_path / "q.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(LoralabError, match="not UTF-8"):
        read_questions(binary)
    with pytest.raises(LoralabError, match="directory"):
        read_questions(tmp_path)
