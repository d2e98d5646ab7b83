"""A report on a full disk (a real 2 MB tmpfs): one line, exit 2, the old report as it was."""

from disk_fixtures import disk, fill, leftovers, refused  # noqa: F401  (disk is a fixture)
from report_records import write_sweep


def test_report_keeps_the_old_files(disk, capsys):
    folder = write_sweep(disk / "sweep")
    (folder / "broken" / "run.json").unlink()  # its warning is a line of its own
    (folder / "report.md").write_text("old report\n")
    fill(disk)
    refused(capsys, ["report", str(folder)])
    assert (folder / "report.md").read_text() == "old report\n" and leftovers(disk) == []
