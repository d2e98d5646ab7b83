"""An intrinsic-dimension measurement's files: the JSON record, its Markdown page and plot, and reading it back."""

from __future__ import annotations

import json

import pytest

from loralab.errors import LoralabError
from loralab.reports.intrinsic import IntrinsicResult, read_intrinsic, write_intrinsic


def test_writes_json_markdown_and_plot(tmp_path):
    result = IntrinsicResult(points=((100, 0.5), (700, 0.85), (750, 0.9), (1000, 0.95)), baseline=0.98,
                             fraction=0.9, d_int=750, lower=700)
    paths = write_intrinsic(result, tmp_path, name="run", metric="accuracy", details={"epochs": 3})
    record = json.loads(paths["json"].read_text())
    assert record["d_int90"] == 750 and record["threshold"] == pytest.approx(0.882)
    assert record["details"] == {"epochs": 3} and len(record["points"]) == 4
    markdown = paths["md"].read_text()
    assert "**d_int90 = 750**" in markdown and "| 750 | 0.9000 | yes |" in markdown and "run.png" in markdown
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_record_reads_back_as_written(tmp_path):
    result = IntrinsicResult(points=((10, 0.3), (100, 0.7)), baseline=0.72, fraction=0.9, d_int=100, lower=10)
    paths = write_intrinsic(result, tmp_path, metric="map@3", details={"epochs": 1})
    record = read_intrinsic(paths["json"])
    assert record.result == result and record.metric == "map@3" and record.details == {"epochs": 1}


@pytest.mark.parametrize("text", ['{"points": 3}', '{"points": [], "fraction": 0.9}'])
def test_a_bad_record_is_refused_with_its_path(tmp_path, text):
    path = tmp_path / "intrinsic.json"
    path.write_text(text)
    with pytest.raises(LoralabError, match="intrinsic.json: not an intrinsic-dimension record"):
        read_intrinsic(path)
