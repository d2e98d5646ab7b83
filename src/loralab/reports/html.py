"""The report as one self-contained page, `report.html`, written beside `report.md`.

The page is built from the same sections and rows as the Markdown, so from the records alone. Its
figures (`figures.py`) are plotly figures, stored in the page as JSON. plotly.js, the page's script
(`assets/report.js`) and its style sheet (`assets/report.css`) are inlined, so the file opens from
disk with no network and no server. Each data set gets:

- the table of rows: mean ± s.d. over seeds, each row against the best one (the difference, twice
  its standard error, the noise verdict of `rows.against_best`), and a link to each run's
  `run.json`; a header click sorts by that column, typed words filter the rows;
- the metric against a cost the reader picks (trainable parameters, training time, peak memory);
  clicking a point opens its record;
- parallel coordinates of the settings that vary, the training loss of each run (a legend click
  hides or shows a run), and the metric against lora_alpha, where alphas vary.

For an intrinsic-dimension measurement (`intrinsic.json` beside the records) the page also plots the
metric against d with the threshold line. A page written while a sweep runs says how many runs are
left.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

from loralab.reports.figures import (COSTS, alpha_figure, cost_figure, curve_figure, figure_json, intrinsic_figure,
                                     loss_figure, parallel_figure, run_seed)
from loralab.reports.intrinsic import IntrinsicRecord
from loralab.reports.markdown import _mean_sd, _summary
from loralab.reports.rows import Section, against_best, higher_is_better, is_number, metric_label, settings_text

PAGE = "report.html"


@dataclass(frozen=True)
class Progress:
    """How far a sweep's planned runs are, from `sweep.json` and the finished records."""

    planned: int
    finished: int
    running: bool
    """Written by the sweep itself, between runs."""

    @property
    def left(self) -> int:
        return self.planned - self.finished

    def text(self) -> str:
        if self.running and self.left:
            return (f"Sweep running: {self.finished} of {self.planned} planned runs finished, {self.left} left. "
                    "The sweep rewrites this page after each run; reload it to see the latest.")
        if self.running:
            return f"Sweep finishing: all {self.planned} planned runs finished; the full report follows."
        if self.left:
            return (f"{self.finished} of {self.planned} planned runs have a finished record, {self.left} not yet "
                    "(the sweep is still running elsewhere, or was stopped: rerun it to finish).")
        return ""


# ---- the table ----------------------------------------------------------------------------------

def _td(text: str, sort: Any = None, cls: str = "") -> str:
    attributes = (f' class="{cls}"' if cls else "") + ("" if sort is None else f' data-sort="{html.escape(str(sort))}"')
    return f"<td{attributes}>{text}</td>"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def table(section: Section, href: Callable[[dict], str], table_id: str) -> str:
    """The rows as an HTML table: every cell carries its number in data-sort, for the page's sorting."""
    metrics = section.metrics or [section.metric]
    verdicts = against_best(section.rows, section.metric)
    comparisons = {id(c.row): c for c in verdicts.others} if verdicts else {}
    name = metric_label(section.metric)
    heads = (["run", "strategy", "settings"], ["trainable params", "train time (s)", "peak memory (MB)"]
             + [metric_label(m) for m in metrics] + ["seeds", f"Δ {name} vs best", "2 × s.e."], ["verdict", "run.json (by seed)"])
    header = ("".join(f"<th>{html.escape(h)}</th>" for h in heads[0]) + "".join(f'<th class="num">{html.escape(h)}</th>'
                                                                              for h in heads[1])
              + "".join(f"<th>{html.escape(h)}</th>" for h in heads[2]))
    lines = [f'<table class="runs" id="{table_id}"><thead><tr>{header}</tr></thead><tbody>']
    for row in section.rows:
        times = [r["train_seconds"] for r in row.records if is_number(r.get("train_seconds"))]
        memory = [r["peak_memory_mb"] for r in row.records if is_number(r.get("peak_memory_mb"))]
        params = row.records[0].get("trainable_params", 0)
        cells = [_td(html.escape(row.label), cls="text"), _td(html.escape(row.strategy)),
                 _td(html.escape(settings_text(row)), cls="text"),
                 _td(f"{params:,}", params, "num"), _td(_mean_sd(times, 0), _mean(times), "num"),
                 _td(_mean_sd(memory, 0), _mean(memory), "num")]
        for m in metrics:
            values = row.values(m)
            text = _mean_sd(values)
            if row.diverged:
                steps = ", ".join(str(r.get("diverged_at_step")) for r in row.diverged)
                note = f"diverged at step {steps}" if not row.completed else \
                    f"({len(row.diverged)} of {len(row.records)} diverged)"
                text = note if not values else f"{text} {note}"
            cells.append(_td(html.escape(text), _mean(values) if values else "", "num"))
        cells.append(_td(str(len(row.records)), len(row.records), "num"))
        comparison = comparisons.get(id(row))
        if verdicts and row is verdicts.best:
            cells += [_td("0", 0, "num"), _td("", "", "num"), _td("best", "0 best")]
        elif comparison is not None:
            bound = "" if comparison.se is None else f"{2 * comparison.se:.3f}"
            cls = {"within noise": "within", "worse beyond noise": "worse"}.get(comparison.verdict, "")
            cells += [_td(f"{comparison.diff:+.3f}", comparison.diff, "num"), _td(bound, bound, "num"),
                      _td(html.escape(comparison.verdict), f"1 {comparison.verdict}", cls)]
        else:
            cells += [_td("", ""), _td("", ""), _td("not scored" if row.diverged else "–", "")]
        links = " ".join(f'<a href="{html.escape(href(r))}" title="run.json of seed {run_seed(r)}">{run_seed(r)}</a>'
                         for r in row.records)
        cells.append(_td(links))
        best = ' class="best"' if verdicts and row is verdicts.best else ""
        lines.append(f"<tr{best}>{''.join(cells)}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _noise_note(section: Section) -> str:
    verdicts = against_best(section.rows, section.metric)
    if verdicts is None:
        return ""
    name = metric_label(section.metric)
    best = f"Best row: {verdicts.best.label} ({name} {verdicts.best.mean(section.metric):.3f}"
    best += ")." if higher_is_better(section.metric) else ", lower is better)."
    if verdicts.pooled is None:
        return best + " No row has two or more seeds, so training noise is unknown."
    return (f"{best} Pooled seed-to-seed s.d. of {name}: {verdicts.pooled:.4f}. A difference is within noise when it "
            "is under twice its standard error (single-seed rows borrow the pooled s.d.).")


# ---- the page -----------------------------------------------------------------------------------

def _asset(name: str) -> str:
    return resources.files("loralab.reports").joinpath("assets", name).read_text(encoding="utf-8")


def _figure_div(key: str, picker: str = "", tall: bool = False) -> str:
    extra = f' data-picker="{picker}"' if picker else ""
    return f'<div class="figure{" tall" if tall else ""}" id="fig-{key}" data-figure="{key}"{extra}></div>'


def _section_html(section: Section, sid: str, heading: str, href: Callable[[dict], str],
                  figures: dict[str, Any]) -> str:
    metric, name = section.metric, metric_label(section.metric)
    summary = " ".join(line for line in _summary(section) if line)
    parts = [f'<section id="{sid}">', f"<h2>{html.escape(heading)}</h2>", f'<p class="note">{html.escape(summary)}</p>',
             "<h3>Rows</h3>",
             f'<div class="controls"><input class="filter" type="search" placeholder="filter: words in any cell" '
             f'data-table="table-{sid}" data-count="count-{sid}" aria-label="filter rows">'
             f'<span id="count-{sid}">{len(section.rows)} of {len(section.rows)} rows</span>'
             '<span class="note">Click a header to sort by it; mean ± s.d. over seeds.</span></div>',
             f'<div class="scroll">{table(section, href, f"table-{sid}")}</div>',
             f'<p class="note">{html.escape(_noise_note(section))}</p>']
    costs = {key: cost_figure(section.rows, metric, cost, href) for key, cost in COSTS.items()}
    costs = {key: figure_json(fig) for key, fig in costs.items() if fig is not None}
    if costs:
        figures[f"cost-{sid}"] = costs
        options = "".join(f'<option value="{key}">{html.escape(COSTS[key].label)}</option>' for key in costs)
        parts += [f"<h3>{html.escape(name)} against cost</h3>",
                  f'<div class="controls"><label>cost axis: <select id="axis-{sid}">{options}</select></label>'
                  '<span class="note">One point per run (diverged runs have no score); the black line is the best '
                  "per budget (costs within 1% count as one budget). Click a point to open its run.json.</span></div>",
                  _figure_div(f"cost-{sid}", f"axis-{sid}")]
    others = [("parallel", f"Settings against {name}", parallel_figure(section.rows, metric),
               "One line per scored run through the settings that vary, coloured by the metric; drag along an axis "
               "to pick a range."),
              ("loss", "Training loss", loss_figure(section.rows),
               "Moving average over a twentieth of each run. Click a legend entry to hide or show a run, "
               "double-click to show it alone."),
              ("curve", f"{name} during training", curve_figure(section.rows, metric),
               "Evaluated every --eval-every steps on the first --eval-limit validation examples; a ring marks the "
               "step whose weights each run kept."),
              ("alpha", f"{name} against lora_alpha", alpha_figure(section.rows, metric),
               "Mean ± s.d. over seeds, seeds as faint dots; the other strategies as dotted lines.")]
    for key, title, fig, note in others:
        if fig is not None:
            figures[f"{key}-{sid}"] = figure_json(fig)
            parts += [f"<h3>{html.escape(title)}</h3>", f'<p class="note">{html.escape(note)}</p>',
                      _figure_div(f"{key}-{sid}", tall=key == "loss")]
    return "\n".join(parts + ["</section>"])


def report_page(sections: list[Section], skipped: list[str], title: str, *, href: Callable[[dict], str],
                description: str = "", progress: Progress | None = None, intrinsic: IntrinsicRecord | None = None,
                files: list[str] = ()) -> str:
    """The whole page, as text: one `<section>` per data set, the figures' JSON and every script inlined."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs
    from plotly.utils import PlotlyJSONEncoder

    figures: dict[str, Any] = {}
    body = [f"<h1>{html.escape(title)}</h1>"]
    if description:
        body.append(f"<p>{html.escape(description)}</p>")
    if progress is not None and progress.text():
        body.append(f'<p class="progress" id="progress">{html.escape(progress.text())}</p>')
    headings = [s.name if len(sections) > 1 else "Results" for s in sections]
    if len(sections) > 1:
        body.append("<nav>" + "".join(f'<a href="#s{i}">{html.escape(h)}</a>' for i, h in enumerate(headings, 1))
                    + "</nav>")
    if intrinsic is not None:
        figures["intrinsic"] = figure_json(intrinsic_figure(intrinsic))
        result = intrinsic.result
        label = f"d_int{round(100 * result.fraction)}"
        verdict = (f"{label} = {result.d_int}" if result.d_int is not None
                   else f"no scored d reached {result.fraction:.0%} of the baseline")
        body += ['<section id="intrinsic"><h2>Intrinsic dimension</h2>',
                 f'<p class="note">{html.escape(verdict)}: the smallest scored d whose {html.escape(intrinsic.metric)} '
                 f"reaches {result.fraction:.0%} of the full fine-tuning baseline.</p>",
                 _figure_div("intrinsic"), "</section>"]
    for i, (section, heading) in enumerate(zip(sections, headings), 1):
        body.append(_section_html(section, f"s{i}", heading, href, figures))
    if skipped:
        body += ["<h2>Records left out</h2>", "<ul>", *(f"<li>{html.escape(s)}</li>" for s in skipped), "</ul>"]
    if files:
        links = ", ".join(f'<a href="{html.escape(name)}">{html.escape(name)}</a>' for name in files)
        body.append(f'<p class="note">Written from the same records: {links}.</p>')
    template = json.loads(json.dumps(pio.templates["plotly_white"].to_plotly_json(), cls=PlotlyJSONEncoder))
    payload = {"template": template, "figures": figures}
    data = json.dumps(payload, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>\n{_asset('report.css')}</style>",
        f"<script>{plotly_js}</script>", "</head>", "<body><main>", *body, "</main>",
        f'<script type="application/json" id="report-data">{data}</script>',
        f"<script>\n{_asset('report.js')}</script>", "</body>", "</html>", ""])
