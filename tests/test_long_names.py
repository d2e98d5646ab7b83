"""Names at and past the file system's limit: a too long --out is refused in one line before anything
runs, and a long one that fits is written, its temporary sibling's name cut to fit."""

from pathlib import Path

import pytest

from loralab.cli import main
from loralab.runs.artifacts import write_json
from loralab.validate import output_file, output_folder
from loralab.errors import LoralabError


def test_a_name_past_the_limit_is_refused(tmp_path):
    with pytest.raises(LoralabError, match="--out: the name .* is 300 bytes long; this file system allows 255"):
        output_folder(tmp_path / ("a" * 300), "--out")
    with pytest.raises(LoralabError, match="is 300 bytes long"):
        output_file(tmp_path / ("b" * 296 + ".csv"), "--out")


def test_a_long_name_that_fits_is_written(tmp_path):
    path = tmp_path / ("c" * 250 + ".json")
    write_json(path, {"a": 1})
    assert path.read_text().strip().startswith("{") and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_train_with_a_300_character_out_is_one_line(tmp_path, capsys):
    status = main(["train", "--train", "x.csv", "--out", str(tmp_path / ("d" * 300)), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "300 bytes long" in err, err
    assert list(Path(tmp_path).iterdir()) == []
