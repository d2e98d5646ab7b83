"""The report as one self-contained page, `report.html`, written beside `report.md`.

The page is built from the same sections and rows as the Markdown, so from the records alone. Its
figures are plotly figures (plotly.graph_objects), stored in the page as JSON. plotly.js, the page's
script (`assets/report.js`) and its style sheet (`assets/report.css`) are inlined, so the file opens
from disk with no network and no server. Each data set gets:

- the table of rows: mean ± s.d. over seeds, each row against the best one (the difference, twice
  its standard error, the noise verdict of `rows.against_best`), and a link to each run's
  `run.json`; a header click sorts by that column, typed words filter the rows;
- the metric against a cost the reader picks (trainable parameters, training time, peak memory):
  one point per run, with the best-per-budget front of `plots.best_per_budget`; clicking a point
  opens its record;
- parallel coordinates (Inselberg 1985): one line per run through the settings that vary, coloured
  by the metric;
- the training loss of each run (a legend click hides or shows a run);
- the metric against lora_alpha, where alphas vary.

For an intrinsic-dimension measurement (`intrinsic.json` beside the records) the page also plots the
metric against d with the threshold line. A page written while a sweep runs says how many runs are
left.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from loralab.errors import LoralabError
from loralab.reports.markdown import _mean_sd, _summary
from loralab.reports.plots import _smooth, alpha_groups, best_per_budget, lora_alpha, run_points
from loralab.reports.rows import (Row, Section, against_best, applies, higher_is_better, is_number, metric_label,
                                  metric_value, setting_name, setting_value, settings_text)

PAGE = "report.html"
INTRINSIC = "intrinsic.json"
NOT_APPLICABLE = "n/a"
"""A setting of another strategy on a parallel-coordinates axis (a full run's lora alpha)."""
MAX_CURVE_POINTS = 600
"""Loss curves are thinned to at most this many points each, so a long run does not bloat the page."""


@dataclass(frozen=True)
class Cost:
    """A cost the quality-versus-cost plot can put on its x axis."""

    label: str
    field: str
    """The record's field holding it."""
    scale: str
    """plotly's axis type: "log" for counts spanning decades, "linear" otherwise."""


COSTS = {
    "params": Cost("trainable parameters", "trainable_params", "log"),
    "time": Cost("training time (s)", "train_seconds", "linear"),
    "memory": Cost("peak memory (MB)", "peak_memory_mb", "linear"),
}


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


def _colors(n: int) -> list[str]:
    from plotly.colors import qualitative

    palette = qualitative.D3 if n <= 10 else qualitative.Dark24  # D3 is matplotlib's tab10, as in the PNGs
    return [palette[i % len(palette)] for i in range(n)]


def _figure_json(fig) -> dict[str, Any]:
    """The figure as plain JSON data, without its template: the page holds the template once."""
    data = json.loads(fig.to_json())
    data["layout"].pop("template", None)
    return data


def _layout(fig, x_title: str, y_title: str, height: int = 440, **extra) -> None:
    fig.update_layout(height=height, margin=dict(l=70, r=20, t=30, b=55), xaxis_title=x_title,
                      yaxis_title=y_title, hoverlabel=dict(namelength=-1), **extra)


def _seed(record: dict[str, Any]) -> Any:
    return record["hyperparameters"].get("training.seed")


# ---- figures ------------------------------------------------------------------------------------

def cost_figure(rows: list[Row], metric: str, cost: Cost, href: Callable[[dict], str]):
    """The metric against `cost`, one point per run coloured by strategy, and the best-per-budget front."""
    import plotly.graph_objects as go

    points = run_points(rows, metric, cost.field)
    if not points:
        return None
    fig = go.Figure()
    strategies = list(dict.fromkeys(row.strategy for _, _, row, _ in points))
    hover = (f"%{{customdata[1]}}<br>%{{customdata[2]}}<br>seed %{{customdata[3]}}<br>{cost.label}: %{{x:,}}"
             f"<br>{metric_label(metric)}: %{{y:.4f}}<br>(click: run.json)<extra></extra>")
    for color, strategy in zip(_colors(len(strategies)), strategies):
        mine = [p for p in points if p[2].strategy == strategy]
        fig.add_scatter(x=[c for c, _, _, _ in mine], y=[v for _, v, _, _ in mine], mode="markers", name=strategy,
                        marker=dict(color=color, size=10, opacity=0.8, line=dict(width=1, color="white")),
                        customdata=[[href(r), row.label, settings_text(row) or row.strategy, _seed(r)]
                                    for _, _, row, r in mine], hovertemplate=hover)
    front = best_per_budget([(c, v) for c, v, _, _ in points], higher_is_better(metric))
    fig.add_scatter(x=[c for c, _ in front], y=[v for _, v in front], mode="lines+markers", name="best per budget",
                    line=dict(color="black", width=1.5, shape="hv"),
                    marker=dict(symbol="circle-open", size=16, color="black", line=dict(width=2)), hoverinfo="skip")
    _layout(fig, f"{cost.label}" + (" (log scale)" if cost.scale == "log" else ""), f"validation {metric_label(metric)}")
    fig.update_xaxes(type=cost.scale)
    return fig


def _ordered(texts: list[str]) -> list[str]:
    """Distinct values in a sensible order: "n/a" (does not apply) first, then numbers by size, then words."""
    def key(text: str):
        try:
            return (1, 0, float(text), text)
        except ValueError:
            return (0 if text == NOT_APPLICABLE else 2, 0, 0.0, text)
    return sorted(set(texts), key=key)


def parallel_figure(rows: list[Row], metric: str):
    """Parallel coordinates: one line per scored run through each varying setting, then the metric."""
    import plotly.graph_objects as go

    runs = [(row, value) for row in rows for r in row.completed if (value := metric_value(r, metric)) is not None]
    columns: list[tuple[str, list[str]]] = []
    if len({row.strategy for row, _ in runs}) > 1:
        columns.append(("strategy", [row.strategy for row, _ in runs]))
    for key in rows[0].settings if rows else ():
        texts = [setting_value(key, row.settings.get(key)) if applies(key, row.strategy) else NOT_APPLICABLE
                 for row, _ in runs]
        if len(set(texts)) > 1:
            columns.append((setting_name(key), texts))
    if len(runs) < 2 or not columns:
        return None
    dimensions = []
    for name, texts in columns:  # settings as ordered categories: a grid's values, evenly spaced
        order = _ordered(texts)
        dimensions.append(dict(label=name, values=[order.index(t) for t in texts], tickvals=list(range(len(order))),
                               ticktext=order, range=[-0.3, len(order) - 0.7]))
    values = [v for _, v in runs]
    dimensions.append(dict(label=metric_label(metric), values=values, tickformat=".3f"))
    line = dict(color=values, colorscale="Viridis", reversescale=not higher_is_better(metric), showscale=True,
                colorbar=dict(title=dict(text=metric_label(metric))))
    fig = go.Figure(go.Parcoords(line=line, dimensions=dimensions, labelangle=0, labelside="top",
                                 labelfont=dict(size=14), tickfont=dict(size=12)))
    fig.update_layout(height=420, margin=dict(l=80, r=40, t=70, b=30))
    return fig


def loss_figure(rows: list[Row]):
    """Training loss per optimizer step (moving average), one line per run, grouped and coloured by row."""
    import plotly.graph_objects as go

    rows = [r for r in rows if any(rec.get("loss") for rec in r.records)]
    if not rows:
        return None
    fig = go.Figure()
    for index, (color, row) in enumerate(zip(_colors(len(rows)), rows)):
        title = f"{row.label} ({settings_text(row)})" if settings_text(row) else row.label
        for i, record in enumerate(row.records):
            loss = [float(x) for x in record.get("loss", []) if is_number(x) and math.isfinite(float(x))]
            if not loss:
                continue
            window = max(1, len(loss) // 20)
            smooth = _smooth(loss, window)
            stride = math.ceil(len(smooth) / MAX_CURVE_POINTS)
            steps = list(range(1, len(smooth) + 1))[::stride]
            diverged = record.get("status") == "diverged"
            fig.add_scatter(x=steps, y=smooth[::stride], mode="lines", line=dict(color=color, width=1.5),
                            name=f"seed {_seed(record)}" + (" (diverged)" if diverged else ""),
                            legendgroup=f"row{index}", legendgrouptitle_text=title if i == 0 else None,
                            hovertemplate=f"{html.escape(title)}, seed {_seed(record)}<br>step %{{x}}: "
                                          "loss %{y:.4f}<extra></extra>")
    buttons = [dict(label="show all", method="restyle", args=[{"visible": True}]),
               dict(label="hide all", method="restyle", args=[{"visible": "legendonly"}])]
    _layout(fig, "optimizer step", "training loss (moving average)", height=520,
            legend=dict(groupclick="toggleitem", font=dict(size=11)),
            updatemenus=[dict(type="buttons", direction="right", buttons=buttons, x=0, xanchor="left", y=1.09,
                              yanchor="top", showactive=False, pad=dict(t=0, b=0))])
    fig.update_layout(margin=dict(t=50))
    return fig


def alpha_figure(rows: list[Row], metric: str):
    """The metric against lora_alpha (log axis), mean ± s.d. per line of LoRA settings, seeds as dots; the
    other strategies as dotted horizontal lines. None unless alphas vary."""
    import plotly.graph_objects as go

    groups = alpha_groups(rows, metric)
    if len({lora_alpha(m) for _, members in groups for m in members}) < 2:
        return None
    fig = go.Figure()
    label = metric_label(metric)
    for color, (text, members) in zip(_colors(len(groups)), groups):
        name = text or "lora"
        fig.add_scatter(x=[lora_alpha(m) for m in members], y=[m.mean(metric) for m in members], name=name,
                        mode="lines+markers", line=dict(color=color), legendgroup=name,
                        error_y=dict(type="data", array=[m.sd(metric) or 0.0 for m in members], visible=True),
                        hovertemplate=f"alpha %{{x}}: mean {label} %{{y:.4f}}<extra>{html.escape(name)}</extra>")
        seeds = [(lora_alpha(m), v) for m in members for v in m.values(metric)]
        fig.add_scatter(x=[a for a, _ in seeds], y=[v for _, v in seeds], mode="markers", legendgroup=name,
                        showlegend=False, marker=dict(color=color, size=6, opacity=0.45), hoverinfo="skip")
    for row in rows:
        if row.strategy != "lora" and row.mean(metric) is not None:
            fig.add_hline(y=row.mean(metric), line=dict(dash="dot", color="grey", width=1),
                          annotation=dict(text=html.escape(row.label), font=dict(size=12, color="grey")),
                          annotation_position="top right")
    _layout(fig, "lora_alpha (log scale)", f"validation {label}")
    fig.update_xaxes(type="log")
    return fig


def read_intrinsic(path: Path) -> dict[str, Any]:
    """An intrinsic-dimension record (`sweeps.intrinsic.write_intrinsic`): metric, baseline, threshold,
    fraction, d_int and the scored points."""
    from loralab.runs.artifacts import read_json

    data = read_json(path)
    try:
        points = [(int(p["d"]), float(p["score"])) for p in data["points"]]
        return {"metric": str(data.get("metric", "score")), "baseline": float(data["baseline"]),
                "threshold": float(data["threshold"]), "fraction": float(data["fraction"]),
                "d_int": data.get("d_int"), "points": points}
    except (KeyError, TypeError, ValueError) as e:
        raise LoralabError(f"{path}: not an intrinsic-dimension record ({e!r})") from None


def intrinsic_figure(result: dict[str, Any]):
    """The metric against d (log axis) with the baseline, the threshold line and d_int."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_scatter(x=[d for d, _ in result["points"]], y=[s for _, s in result["points"]], mode="lines+markers",
                    name="subspace training", hovertemplate="d = %{x}: %{y:.4f}<extra></extra>")
    percent = round(100 * result["fraction"])
    fig.add_hline(y=result["baseline"], line=dict(dash="dash", color="grey"),
                  annotation_text=f"baseline {result['baseline']:.4g}", annotation_position="bottom right")
    fig.add_hline(y=result["threshold"], line=dict(dash="dot", color="#d62728"),
                  annotation_text=f"{percent}% of baseline: {result['threshold']:.4g}",
                  annotation_position="bottom right")
    if result["d_int"] is not None:
        fig.add_vline(x=result["d_int"], line=dict(dash="dashdot", color="#2ca02c"),
                      annotation_text=f"d_int{percent} = {result['d_int']}", annotation_position="top left")
    _layout(fig, "subspace dimension d (log scale)", result["metric"])
    fig.update_xaxes(type="log")
    return fig


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
        links = " ".join(f'<a href="{html.escape(href(r))}" title="run.json of seed {_seed(r)}">{_seed(r)}</a>'
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
    costs = {key: _figure_json(fig) for key, fig in costs.items() if fig is not None}
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
              ("alpha", f"{name} against lora_alpha", alpha_figure(section.rows, metric),
               "Mean ± s.d. over seeds, seeds as faint dots; the other strategies as dotted lines.")]
    for key, title, fig, note in others:
        if fig is not None:
            figures[f"{key}-{sid}"] = _figure_json(fig)
            parts += [f"<h3>{html.escape(title)}</h3>", f'<p class="note">{html.escape(note)}</p>',
                      _figure_div(f"{key}-{sid}", tall=key == "loss")]
    return "\n".join(parts + ["</section>"])


def report_page(sections: list[Section], skipped: list[str], title: str, *, href: Callable[[dict], str],
                description: str = "", progress: Progress | None = None, intrinsic: dict[str, Any] | None = None,
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
        figures["intrinsic"] = _figure_json(intrinsic_figure(intrinsic))
        label = f"d_int{round(100 * intrinsic['fraction'])}"
        verdict = (f"{label} = {intrinsic['d_int']}" if intrinsic["d_int"] is not None
                   else f"no scored d reached {intrinsic['fraction']:.0%} of the baseline")
        body += ['<section id="intrinsic"><h2>Intrinsic dimension</h2>',
                 f'<p class="note">{html.escape(verdict)}: the smallest scored d whose {html.escape(intrinsic["metric"])} '
                 f"reaches {intrinsic['fraction']:.0%} of the full fine-tuning baseline.</p>",
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
