"""write_report and `loralab report` as a user calls them: the folder in, the files out, the errors."""

import pytest

from loralab.cli import main
from loralab.errors import LoralabError
from loralab.reports import write_report
from report_records import write_sweep


@pytest.fixture
def sweep_dir(tmp_path):
    return write_sweep(tmp_path)


def test_cli_report_and_empty_folder(sweep_dir, tmp_path_factory, capsys):
    assert main(["report", str(sweep_dir)]) == 0
    assert "| full |" in capsys.readouterr().out
    empty = tmp_path_factory.mktemp("empty")
    assert main(["report", str(empty)]) == 2
    assert "no finished run records" in capsys.readouterr().err
    with pytest.raises(LoralabError, match="unknown metric"):
        write_report(sweep_dir, metric="f1")


def test_metric_must_be_known_and_reported(sweep_dir, capsys):
    with pytest.raises(LoralabError, match="unknown metric 'bleu'; choose one of map@3, accuracy, f1, mcc"):
        write_report(sweep_dir, metric="bleu")
    assert main(["report", str(sweep_dir), "--metric", "mse"]) == 2
    assert "unknown metric 'mse' for these records: they report map@3, accuracy" in capsys.readouterr().err
    assert main(["report", str(sweep_dir), "--metric", "accuracy"]) == 0
    assert "## Against the best row (full: accuracy 0.610)" in capsys.readouterr().out
