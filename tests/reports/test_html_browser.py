"""report.html in a real browser: headless Chromium opens the page from disk, with name resolution off.

Two pages: the committed seed-blog report, and the report of a tiny sweep (a tiny BERT, five runs)
made here. Each must load without a console error or a network request, draw every trace of every
figure, list the expected rows, sort them when a header is clicked, filter them, and switch the cost
axis. Without a browser the tests skip, saying why; with LORALAB_REQUIRE_BROWSER=1 (as .ci/run sets)
they fail instead.
"""

import os
import textwrap
from pathlib import Path

import pytest

from browser import STATE, find_browser, load, open_browser
from conftest import SCIENCE
from loralab.reports import build_sections, load_records, read_manifest

SEED_BLOG = Path(__file__).resolve().parents[2] / "experiments" / "results" / "seed-blog"


def _unavailable(why: str):
    message = f"report browser test: {why}"
    if os.environ.get("LORALAB_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (LORALAB_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def driver():
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    found = find_browser()
    if isinstance(found, str):
        _unavailable(found)
    driver = open_browser(*found)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, minilm_tokenizer):
    """Five real runs of a tiny BERT on 8 science-exam questions: full (two seeds), LoRA at two alphas, q+v."""
    if not SCIENCE.is_dir():
        pytest.skip("../shared/data/science-exam is not present")
    from loralab.cli import main
    from run_fixtures import save_tiny_bert

    folder = tmp_path_factory.mktemp("tiny-sweep")
    model = save_tiny_bert(folder / "model", minilm_tokenizer)
    experiment = folder / "tiny.yaml"
    experiment.write_text(textwrap.dedent(f"""
        name: tiny
        description: A tiny BERT on 8 science-exam questions, for the report's browser test.
        base:
          train: {SCIENCE / 'train.csv'}
          valid: {SCIENCE / 'valid.csv'}
          model: {model}
          device: cpu
          train_limit: 8
          valid_limit: 8
          training: {{epochs: 2, batch_size: 4, max_length: 32, lr: 0.01, warmup_ratio: 0.0}}
        runs:
          - {{name: full, strategy: full, seeds: [0, 1]}}
          - {{name: lora, strategy: lora, grid: {{lora_alpha: [8, 64]}}}}
          - {{name: qv, strategy: qv}}
        """))
    assert main(["sweep", str(experiment), "--out", str(folder / "out"), "--threads", "1", "--quiet"]) == 0
    return folder / "out"


def expected_rows(folder: Path) -> list:
    records, _ = load_records(folder)
    (section,) = build_sections(records, read_manifest(folder))
    return section.rows, section.metric


TABLE = "return Array.from(document.querySelectorAll('#table-s1 tbody tr')).map(function (r) {" \
        " return {label: r.cells[0].textContent, sort: r.cells[%d].dataset.sort, shown: !r.hidden}; });"


def check_page(driver, page: Path, rows, metric: str, figures: set[str]) -> None:
    state = load(driver, page)
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith(("file:", "data:", "blob:")) for name in resources), resources

    assert {f["id"] for f in state} == figures
    for figure in state:
        assert figure["plotted"] and figure["visible"] == figure["expected"] > 0, figure
        assert figure["drawn"] == figure["scatter"], figure  # every scatter trace drew its points or line
        assert figure["axes"] == figure["dimensions"], figure  # parcoords drew an axis per dimension
        if figure["parcoords"]:
            assert figure["canvases"] > 0, figure  # and its lines' WebGL canvases

    # the table: the rows in report order; a click on the metric's header sorts ascending, another descending
    from loralab.reports.rows import metric_label

    headers = driver.find_elements("css selector", "#table-s1 thead th")
    column = [h.text for h in headers].index(metric_label(metric))
    assert [r["label"] for r in driver.execute_script(TABLE % column)] == [row.label for row in rows]
    scored = [row for row in rows if row.mean(metric) is not None]
    for direction in (False, True):
        headers[column].click()
        shown = driver.execute_script(TABLE % column)
        expected = sorted(scored, key=lambda row: row.mean(metric), reverse=direction)
        assert [r["label"] for r in shown][:len(scored)] == [row.label for row in expected]
        values = [float(r["sort"]) for r in shown[:len(scored)]]
        assert values == sorted(values, reverse=direction)
        assert headers[column].get_attribute("aria-sort") == ("descending" if direction else "ascending")

    # the filter keeps the rows holding every word typed
    box = driver.find_element("css selector", "input.filter")
    box.send_keys("lora")
    kept = [r for r in driver.execute_script(TABLE % column) if r["shown"]]
    assert len(kept) == sum(row.strategy == "lora" for row in rows) > 0
    assert driver.find_element("id", "count-s1").text == f"{len(kept)} of {len(rows)} rows"
    driver.execute_script("arguments[0].value = ''; arguments[0].dispatchEvent(new Event('input'));", box)
    assert all(r["shown"] for r in driver.execute_script(TABLE % column))

    # the cost axis switches, and the new figure draws too
    for value, title in (("time", "training time (s)"), ("memory", "peak memory (MB)")):
        driver.find_element("css selector", f"#axis-s1 option[value={value}]").click()
        (cost,) = [f for f in driver.execute_script(STATE) if f["id"] == "fig-cost-s1"]
        assert cost["xtitle"] == title and cost["drawn"] == cost["scatter"] > 0
    assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_seed_blog_report_in_chromium(driver):
    page = SEED_BLOG / "report.html"
    assert page.is_file(), f"{page} is not committed: run `loralab report {SEED_BLOG}`"
    rows, metric = expected_rows(SEED_BLOG)
    assert len(rows) == 10  # 16 runs in 10 rows, as report.md says
    check_page(driver, page, rows, metric, {"fig-cost-s1", "fig-parallel-s1", "fig-loss-s1", "fig-alpha-s1"})


def test_tiny_sweep_report_in_chromium(driver, tiny_sweep):
    rows, metric = expected_rows(tiny_sweep)
    assert [row.label for row in rows] == ["full", "lora", "lora", "qv"]
    check_page(driver, tiny_sweep / "report.html", rows, metric,
               {"fig-cost-s1", "fig-parallel-s1", "fig-loss-s1", "fig-alpha-s1"})
