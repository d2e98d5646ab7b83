"""report.html without a browser: self-contained, the table and figures hold what the records say, links resolve.

What a browser makes of the page (it draws, sorts, filters) is tested in test_html_browser.py.
"""

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from loralab.reports import against_best, budget_front, write_page, write_report
from loralab.reports.intrinsic import IntrinsicResult, write_intrinsic
from report_records import RUNS, write_run, write_sweep


class Page(HTMLParser):
    """The parts of report.html a test reads: script tags, links, table rows' cells, the figures' JSON."""

    def __init__(self, text: str):
        super().__init__()
        self.scripts, self.links, self.tables, self.figure_divs = [], [], {}, []
        self._table = self._row = self._cell = None
        self._in_data = False
        self.data = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts.append(a)
            self._in_data = a.get("id") == "report-data"
        elif tag in ("link", "img", "iframe"):
            self.links.append(a)
        elif tag == "a":
            self.links.append(a)
        elif tag == "table":
            self._table = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""
        elif tag == "div" and "data-figure" in a:
            self.figure_divs.append(a["data-figure"])

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "script":
            self._in_data = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._in_data:
            self.data += data

    @property
    def figures(self) -> dict:
        return json.loads(self.data)["figures"]


@pytest.fixture
def sweep_dir(tmp_path):
    return write_sweep(tmp_path / "sweep")


def test_page_is_self_contained(sweep_dir):
    report = write_report(sweep_dir)
    text = (sweep_dir / "report.html").read_text()
    assert sweep_dir / "report.html" in report.files
    page = Page(text)
    assert all("src" not in s for s in page.scripts)  # every script inline
    assert "plotly.js v" in text and "Plotly.react" in text
    external = [a for a in page.links if re.match(r"(https?:)?//", a.get("href", "") + a.get("src", ""))]
    assert not external
    assert len(page.scripts) == 3  # plotly.js, the figures' JSON, the page's own script


def test_table_holds_the_rows_their_verdicts_and_links(sweep_dir, tmp_path):
    out = tmp_path / "elsewhere"
    report = write_report(sweep_dir, out)
    page = Page((out / "report.html").read_text())
    rows = page.tables["table-s1"]
    (section,) = report.sections
    assert [r[0] for r in rows] == [row.label for row in section.rows]
    full = rows[0]
    assert full[:2] == ["full", "full"] and full[6] == "0.710 ± 0.010" and full[-2] == "best"
    (diverged,) = [r for r in rows if "diverged" in r[6]]
    assert diverged[6] == "diverged at step 3" and diverged[-2] == "not scored"
    verdicts = {id(c.row): c for c in against_best(section.rows, "map@3").others}
    assert len(verdicts) == 3  # q+v and the two scored alphas, against full
    for cells, row in zip(rows, section.rows):
        if (c := verdicts.get(id(row))) is not None:
            assert (cells[-4], cells[-3], cells[-2]) == (f"{c.diff:+.3f}", f"{2 * c.se:.3f}", c.verdict)
    assert [r[-2] for r in rows].count("within noise") == 1  # q+v: 0.700 against 0.710, two seeds
    links = [a["href"] for a in page.links if a.get("href", "").endswith("run.json")]
    assert len(links) == len(RUNS)  # one per run, seeds and the diverged one included
    for href in links:  # relative to the page, wherever it was written
        assert (out / unquote(href)).resolve().is_file(), href


def test_figures_hold_every_run_and_the_front(sweep_dir):
    report = write_report(sweep_dir)
    page = Page((sweep_dir / "report.html").read_text())
    figures = page.figures
    assert page.figure_divs == ["cost-s1", "parallel-s1", "loss-s1", "alpha-s1"]
    (section,) = report.sections
    scored = [r for r in RUNS if r[7] is not None]
    costs = figures["cost-s1"]
    assert sorted(costs) == ["memory", "params", "time"]
    for key, field in (("params", "trainable_params"), ("time", "train_seconds"), ("memory", "peak_memory_mb")):
        *points, front = costs[key]["data"]
        assert sum(len(t["x"]) for t in points) == len(scored)
        assert front["name"] == "best per budget"
        assert list(zip(front["x"], front["y"])) == budget_front(section.rows, "map@3", field)
    (parallel,) = figures["parallel-s1"]["data"]
    assert [d["label"] for d in parallel["dimensions"]] == ["strategy", "alpha", "lr", "MAP@3"]
    assert sorted(parallel["dimensions"][-1]["values"]) == sorted(r[7] for r in scored)
    loss = figures["loss-s1"]["data"]
    assert len(loss) == len(RUNS) and sum("(diverged)" in t["name"] for t in loss) == 1
    alpha = figures["alpha-s1"]["data"]
    assert sorted(x for t in alpha if t.get("mode") == "lines+markers" for x in t["x"]) == [8.0, 512.0]


def test_data_sets_get_a_section_each(tmp_path):
    for i, (train, strategy) in enumerate([("/a/train.csv", "full"), ("/a/train.csv", "lora"),
                                           ("/b/train.csv", "full")]):
        write_run(tmp_path / f"run{i}", strategy, 0, 100 * (i + 1), {"map@3": 0.5 + i / 10, "accuracy": 0.4},
                  train=train)
    write_report(tmp_path)
    page = Page((tmp_path / "report.html").read_text())
    assert sorted(page.tables) == ["table-s1", "table-s2"]
    assert "cost-s2" in page.figures and '<nav><a href="#s1">' in (tmp_path / "report.html").read_text()


def test_intrinsic_dimension_plot_and_a_bad_record(sweep_dir):
    result = IntrinsicResult(points=((10, 0.3), (100, 0.6), (1000, 0.7)), baseline=0.72, fraction=0.9, d_int=1000,
                             lower=100)
    write_intrinsic(result, sweep_dir, metric="map@3")
    write_report(sweep_dir)
    page = Page((sweep_dir / "report.html").read_text())
    figure = page.figures["intrinsic"]
    assert figure["data"][0]["x"] == [10, 100, 1000]
    lines = {round(s["y0"], 6) for s in figure["layout"]["shapes"] if s.get("y0") == s.get("y1")}
    assert lines == {0.72, round(0.9 * 0.72, 6)}
    assert "d_int90 = 1000" in (sweep_dir / "report.html").read_text()
    (sweep_dir / "intrinsic.json").write_text('{"points": 3}')
    write_report(sweep_dir)
    text = (sweep_dir / "report.html").read_text()
    assert "not an intrinsic-dimension record" in text and '"intrinsic"' not in text


def test_progress_of_an_unfinished_sweep(sweep_dir):
    (sweep_dir / "qv_s1" / "run.json").unlink()
    write_page(sweep_dir)
    text = (sweep_dir / "report.html").read_text()
    assert "7 of 8 planned runs have a finished record, 1 not yet" in text
    write_page(sweep_dir, running=True)
    assert "Sweep running: 7 of 8 planned runs finished, 1 left." in (sweep_dir / "report.html").read_text()


SEED_BLOG = Path(__file__).resolve().parents[2] / "experiments" / "results" / "seed-blog"


def _traces(page: Page) -> dict:
    """Each figure's traces as (name, x, y); the cost figure's for each of its axes."""
    out = {}
    for key, figure in page.figures.items():
        for axis, fig in (figure.items() if "data" not in figure else [("", figure)]):
            out[key, axis] = [(t.get("name"), t.get("x"), t.get("y")) for t in fig["data"]]
    return out


def _scripts_removed(text: str) -> str:
    return re.sub(r"<script[^>]*>.*?</script>", "<script/>", text, flags=re.S)


def test_committed_seed_blog_page_is_rebuilt_from_its_records_alone(tmp_path):
    """Only the committed records and the manifest, copied elsewhere, give the committed page (plotly.js aside)."""
    for path in [SEED_BLOG / "sweep.json", *SEED_BLOG.glob("*/run.json")]:
        target = tmp_path / path.relative_to(SEED_BLOG)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    write_report(tmp_path)
    committed, rebuilt = (SEED_BLOG / "report.html").read_text(), (tmp_path / "report.html").read_text()
    assert _scripts_removed(rebuilt) == _scripts_removed(committed)  # every word, cell and link
    assert _traces(Page(rebuilt)) == _traces(Page(committed))  # every point of every figure
    assert (tmp_path / "report.md").read_text() == (SEED_BLOG / "report.md").read_text()
