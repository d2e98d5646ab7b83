"""Headless Chromium, driven by Selenium, for the report page's browser test and its screenshots.

The browser is Debian's `chromium` with its `chromedriver` (`apt-get install chromium chromium-driver`),
found on PATH or named by LORALAB_CHROMIUM / LORALAB_CHROMEDRIVER. Name resolution is switched off
(every host maps to nothing), so a page that tried to fetch anything from the network would fail.

    python tests/reports/browser.py experiments/results/seed-blog/report.html --out experiments/results/seed-blog

saves screenshots of a report page at a laptop's width (1366 pixels), one per part of the page.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

WIDTH, HEIGHT = 1366, 768
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Every figure's state as the page drew it, read from the DOM that plotly.js built: the traces the page's
# JSON holds, those plotly.js took as visible, those drawn with marks in the SVG, parcoords' axes, axis titles.
STATE = """
var figures = JSON.parse(document.getElementById('report-data').textContent).figures;
return Array.from(document.querySelectorAll('[data-figure]')).map(function (gd) {
  var figure = figures[gd.dataset.figure];
  if (gd.dataset.picker) { figure = figure[document.getElementById(gd.dataset.picker).value]; }
  var full = gd._fullData || [];
  var visible = full.filter(function (t) { return t.visible === true; });
  var drawn = Array.from(gd.querySelectorAll('.scatterlayer g.trace')).filter(function (g) {
    var line = g.querySelector('path.js-line');
    return g.querySelectorAll('path.point').length > 0 || (line && (line.getAttribute('d') || '').length > 2);
  }).length;
  var parcoords = visible.filter(function (t) { return t.type === 'parcoords'; });
  var xaxis = gd._fullLayout && gd._fullLayout.xaxis;
  return {id: gd.id, plotted: gd.classList.contains('js-plotly-plot'), visible: visible.length,
          expected: figure.data.filter(function (t) { return t.visible !== false; }).length,
          scatter: visible.filter(function (t) { return t.type === 'scatter'; }).length, drawn: drawn,
          parcoords: parcoords.length,
          dimensions: parcoords.reduce(function (n, t) { return n + t.dimensions.length; }, 0),
          axes: gd.querySelectorAll('.parcoords .y-axis').length,
          canvases: gd.querySelectorAll('canvas').length,
          xtitle: xaxis && xaxis.title ? xaxis.title.text : null};
});
"""


def find_browser() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or a sentence saying what is missing and how to install it."""
    browser = os.environ.get("LORALAB_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM)), None)
    driver = os.environ.get("LORALAB_CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver))
               if not path or not Path(path).is_file()]
    if missing:
        return (f"no {' and no '.join(missing)} found (PATH, LORALAB_CHROMIUM, LORALAB_CHROMEDRIVER): install them "
                "with `apt-get install chromium chromium-driver` to run the report's browser test")
    return browser, driver


def open_browser(browser: str, driver: str, width: int = WIDTH, height: int = HEIGHT):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                     "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
                     # parallel coordinates draw with WebGL: software rendering where there is no GPU
                     "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def load(driver, page: Path, timeout: float = 60.0) -> list[dict]:
    """Open `page` from disk and wait until every figure is plotted; the figures' STATE."""
    driver.get(Path(page).resolve().as_uri())
    deadline = time.monotonic() + timeout
    while True:
        state = driver.execute_script(STATE)
        if state and all(f["plotted"] for f in state) or time.monotonic() > deadline:
            time.sleep(0.5)  # parcoords and legends settle after the first paint
            return driver.execute_script(STATE)
        time.sleep(0.2)


def screenshots(page: Path, out: Path) -> list[Path]:
    """Screenshots of the page at WIDTH pixels: the top, the first table, then each figure with its heading."""
    found = find_browser()
    if isinstance(found, str):
        raise SystemExit(found)
    driver = open_browser(*found)
    try:
        load(driver, page)
        names = {"top": "document.body", "rows": "document.querySelector('section h3')"}
        for figure in driver.execute_script("return Array.from(document.querySelectorAll('[data-figure]'))"
                                            ".map(function (d) { return d.id; })"):
            names.setdefault(figure.removeprefix("fig-").rsplit("-", 1)[0], f"document.getElementById('{figure}')")
        paths = []
        for name, element in names.items():
            # scroll so that the figure's heading (two elements up) shows above it
            driver.execute_script(f"var e = {element}; var h = e.previousElementSibling; "
                                  "while (h && !/^H[23]$/.test(h.tagName)) { h = h.previousElementSibling; } "
                                  "(h || e).scrollIntoView(); window.scrollBy(0, -8);"
                                  if name != "top" else "window.scrollTo(0, 0);")
            time.sleep(0.5)
            path = out / f"report-{name}.png"
            driver.save_screenshot(str(path))
            paths.append(path)
        return paths
    finally:
        driver.quit()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for report-<part>.png")
    args = parser.parse_args()
    for path in screenshots(args.page, args.out):
        print(path)
