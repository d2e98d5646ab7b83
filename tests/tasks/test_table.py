"""The one tabular reader: byte-order marks, duplicate columns, large cells, TSV with quoting off."""

import pytest

from loralab.tasks.multiple_choice import read_questions
from loralab.tasks.table import read_table
from loralab.errors import LoralabError


def test_byte_order_mark_keeps_the_first_column_name(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes("id,prompt,A,B,answer\nq7,Q,a,b,B\n".encode("utf-8-sig"))
    assert read_table(path).header[0] == "id"
    [question] = read_questions(path)
    assert question.id == "q7" and question.answer == 1


@pytest.mark.parametrize("header,named", [("id,prompt,A,B,answer,answer", "'answer' twice (columns 5 and 6)"),
                                          ("id,prompt,A,B,A,answer", "'A' twice (columns 3 and 5)")])
def test_duplicate_column_names_are_refused_naming_both(tmp_path, header, named):
    path = tmp_path / "q.csv"
    path.write_text(header + "\n" + ",".join("x" for _ in header.split(",")) + "\n")
    with pytest.raises(LoralabError, match=named.replace("(", r"\(").replace(")", r"\)")):
        read_table(path)


def test_cells_larger_than_the_csv_module_default_are_read(tmp_path):
    long = "word " * 60_000  # 300 KB, over csv's 128 KB default limit
    path = tmp_path / "q.csv"
    path.write_text(f'id,prompt,A,B,answer\n1,"{long}",a,b,A\n')
    [question] = read_questions(path)
    assert question.prompt == long.strip()


def test_what_cannot_be_parsed_names_the_row(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b"id,prompt,A,B,answer\n1,Q,a,b,A\n2,Q,\xe9,b,A\n")
    with pytest.raises(LoralabError, match=r"q.csv, row 3: not UTF-8 text"):
        read_table(path)
    path.write_bytes(b"id,prompt,A,B,answer\n1,Q,a\x00,b,A\n")
    with pytest.raises(LoralabError, match=r"row 2: contains a NUL character"):
        read_table(path)
    path.write_text("id,prompt,A,B,answer\n1,Q,a,b\n")
    with pytest.raises(LoralabError, match=r"row 2: has 4 fields, the header has 5"):
        read_table(path)


def test_rows_carry_the_line_they_start_on(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('id,prompt,A,B,answer\n1,"two\nlines",a,b,A\n\n2,Q,a,b,B\n')
    assert [line for line, _ in read_table(path).rows] == [2, 5]


def test_tsv_reads_with_quoting_off(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text('sentence\tlabel\nit \'s a "quoted" film\t1\n"leading quote\t0\n')
    table = read_table(path)
    assert table.header == ("sentence", "label")
    assert [cells for _, cells in table.rows] == [('it \'s a "quoted" film', "1"), ('"leading quote', "0")]
