"""A report over records of the wrong types, past the parser's limits or from a later loralab: each is
left out with a warning naming it, and the report is written from the rest."""

import json

from report_records import write_sweep

from loralab.cli import main
from loralab.runs.artifacts import RECORD

BAD = {"peak": {"peak_memory_mb": "lots"}, "validgood": {"valid": "good"}, "loss5": {"loss": 5},
       "strategy7": {"strategy": 7}, "future": {"loralab_version": "99.0.0"}}


def test_bad_records_are_left_out_with_a_warning(tmp_path, capsys):
    folder = write_sweep(tmp_path / "sweep")
    good = json.loads((folder / "full_s0" / RECORD).read_text())
    for name, change in BAD.items():
        (folder / name).mkdir()
        (folder / name / RECORD).write_text(json.dumps({**good, **change}))
    (folder / "digits").mkdir()
    (folder / "digits" / RECORD).write_text('{"status": "completed", "steps": ' + "9" * 5000 + "}")
    (folder / "deep").mkdir()
    (folder / "deep" / RECORD).write_text("[" * 200_000 + "]" * 200_000)
    (folder / "sweep.json").write_text(json.dumps({"experiment": "x", "runs": "oops"}))
    assert main(["report", str(folder)]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("loralab: warning: ")]
    said = " ".join(warned)
    assert len(warned) == len(BAD) + 4  # once each: the bad records, write_sweep's broken one, sweep.json
    for name in [*BAD, "digits", "deep"]:
        assert f"{name}/{RECORD}" in said, name
    assert "sweep.json: field 'runs' is str" in said
    assert (folder / "report.md").is_file() and (folder / "report.html").is_file()
    for name in BAD:
        assert f"- {name}: " in (folder / "report.md").read_text()
