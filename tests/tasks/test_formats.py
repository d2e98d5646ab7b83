"""Every task reads JSON Lines, JSON arrays, Parquet and datasets folders by column name, exactly as
it reads CSV, with the same one-line errors; an unsupported format is named as such."""

import csv
import io
import re
import json

import pytest

from loralab.errors import LoralabError
from loralab.tasks import TaskConfig, get_task, infer_task
from loralab.tasks.table import read_table

MC = "id,prompt,A,B,C,answer\nq1,Why?,because,no,maybe,A\nq2,How?,so,thus,hence,C\n"
CLS = "index\tsentence1\tsentence2\tlabel\n0\tA man.\tA person.\tentailment\n1\tA dog.\tA cat.\tnot_entailment\n"
REG = "index\tsentence1\tsentence2\tscore\n0\tA plane.\tAn airplane.\t4.8\n1\tA man.\tA dog.\t0.4\n"
COMPLETION = [{"prompt": "Q: 1+1?", "completion": " 2"}, {"prompt": "Q: 2+2?", "completion": " 4"}]


def rows(text: str) -> list[dict]:
    delimiter = "\t" if "\t" in text.splitlines()[0] else ","
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


def typed(records: list[dict]) -> list[dict]:
    """As a JSON or Parquet export would hold them: numbers as numbers."""
    def value(v):
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    return [{k: value(v) for k, v in r.items()} for r in records]


def write(folder, stem: str, records: list[dict]) -> dict[str, str]:
    """The same records as JSON Lines, a JSON array, Parquet and a datasets folder."""
    import datasets
    import pyarrow
    import pyarrow.parquet

    paths = {fmt: folder / f"{stem}.{fmt}" for fmt in ("jsonl", "json", "parquet")}
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in records))
    paths["json"].write_text(json.dumps(records))
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(records), paths["parquet"])
    paths["datasets"] = folder / f"{stem}-ds"
    datasets.Dataset.from_list(records).save_to_disk(str(paths["datasets"]))
    return {k: str(v) for k, v in paths.items()}


def strip_lines(examples):
    return [{k: v for k, v in vars(e).items() if k != "line"} if hasattr(e, "__dict__") else e for e in examples]


@pytest.mark.parametrize("name,text,task", [("mc", MC, "multiple-choice"), ("cls", CLS, "classification"),
                                            ("reg", REG, "regression")])
def test_tables_read_as_their_csv(tmp_path, name, text, task):
    pytest.importorskip("datasets")
    source = tmp_path / (f"{name}.csv" if "," in text.splitlines()[0] else f"{name}.tsv")
    source.write_text(text)
    expected = get_task(task).read(source, TaskConfig())
    assert infer_task(source, TaskConfig()) == task
    for fmt, path in write(tmp_path, name, typed(rows(text))).items():
        assert infer_task(path, TaskConfig()) == task, fmt
        got = get_task(task).read(path, TaskConfig())
        key = (lambda e: (e.id, e.prompt, e.options, e.answer)) if task == "multiple-choice" else \
              (lambda e: (e.id, e.text, e.text_pair, float(e.label) if task == "regression" else e.label))
        assert [key(e) for e in got] == [key(e) for e in expected], fmt


def test_completion_reads_every_record_format(tmp_path):
    pytest.importorskip("datasets")
    from loralab.tasks.completion import read_examples

    expected = [(e.prompt, e.completion) for e in read_examples(write(tmp_path, "c", COMPLETION)["jsonl"])]
    for fmt, path in write(tmp_path, "c2", COMPLETION).items():
        assert infer_task(path, TaskConfig()) == "completion", fmt
        assert [(e.prompt, e.completion) for e in read_examples(path)] == expected, fmt


def test_a_datasets_folder_of_several_splits_needs_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = datasets.DatasetDict({"train": datasets.Dataset.from_list(typed(rows(CLS))),
                                 "validation": datasets.Dataset.from_list(typed(rows(CLS))[:1])})
    data.save_to_disk(str(tmp_path / "glue"))
    with pytest.raises(LoralabError, match=r"several splits \(it holds train, validation\); choose one with --split"):
        read_table(tmp_path / "glue")
    assert len(read_table(tmp_path / "glue", split="validation").rows) == 1
    with pytest.raises(LoralabError, match="no split 'test'"):
        read_table(tmp_path / "glue", split="test")
    examples = get_task("classification").read(tmp_path / "glue", TaskConfig(split="train"))
    assert [e.label for e in examples] == ["entailment", "not_entailment"]


@pytest.mark.parametrize("name,content,message", [
    ("bad.jsonl", '{"prompt": "x", "A": "a"}\n{"prompt": \n', "bad.jsonl, line 2: not JSON"),
    ("dup.jsonl", '{"prompt": "x", "prompt": "y"}\n', "dup.jsonl, line 1: key 'prompt' given twice"),
    ("list.jsonl", '[1, 2]\n', "list.jsonl, line 1: expected a JSON object, got list"),
    ("arr.json", '{"a": 1, "b": 2}', "arr.json: expected a JSON array of objects, got dict"),
    ("nested.json", '[{"sentence": ["a"], "label": "x"}]', "nested.json, row 2, field 'sentence': a list"),
    ("big.json", '[{"label": ' + "9" * 5000 + "}]", "big.json, line 1: not readable JSON (Exceeds"),
    ("deep.json", "[" * 200_000 + "]" * 200_000, "deep.json, line 1: not readable JSON (nested too deeply)"),
    ("surrogate.json", '[{"sentence": "a \\ud800", "label": "x"}]', "field 'sentence': character 3 is a lone surrogate"),
    ("book.xlsx", "PK", "book.xlsx: unsupported format .xlsx"),
    ("bad.parquet", "not parquet", "bad.parquet: not a readable Parquet file"),
])
def test_bad_files_are_one_line_errors(tmp_path, name, content, message):
    pytest.importorskip("pyarrow")
    (tmp_path / name).write_text(content)
    with pytest.raises(LoralabError, match=re.escape(message)):
        read_table(tmp_path / name)


def test_a_plain_folder_is_not_a_datasets_folder(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(LoralabError, match="is a directory, not a datasets folder"):
        read_table(tmp_path / "d")
