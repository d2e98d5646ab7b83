"""The interactive figures of the report page (plotly.graph_objects), one function per figure.

Each returns a plotly figure, or None when its data would show nothing (fewer than two runs, alphas
that do not vary); `figure_json` turns one into the plain JSON the page stores.

- `cost_figure`: the metric against a cost (trainable parameters, training time, peak memory), one
  point per run, with the best-per-budget front of `plots.best_per_budget`;
- `parallel_figure`: parallel coordinates (Inselberg 1985), one line per run through the settings
  that vary, coloured by the metric;
- `loss_figure`: the training loss of each run;
- `alpha_figure`: the metric against lora_alpha;
- `intrinsic_figure`: an intrinsic-dimension measurement, the metric against d with the threshold.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from loralab.reports.intrinsic import IntrinsicRecord
from loralab.reports.plots import alpha_groups, best_per_budget, lora_alpha, moving_average, run_points
from loralab.reports.rows import (Row, applies, higher_is_better, is_number, metric_label, metric_value, setting_name,
                                  setting_value, settings_text)

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


def _colors(n: int) -> list[str]:
    from plotly.colors import qualitative

    palette = qualitative.D3 if n <= 10 else qualitative.Dark24  # D3 is matplotlib's tab10, as in the PNGs
    return [palette[i % len(palette)] for i in range(n)]


def figure_json(fig) -> dict[str, Any]:
    """The figure as plain JSON data, without its template: the page holds the template once."""
    data = json.loads(fig.to_json())
    data["layout"].pop("template", None)
    return data


def _layout(fig, x_title: str, y_title: str, height: int = 440, **extra) -> None:
    fig.update_layout(height=height, margin=dict(l=70, r=20, t=30, b=55), xaxis_title=x_title,
                      yaxis_title=y_title, hoverlabel=dict(namelength=-1), **extra)


def run_seed(record: dict[str, Any]) -> Any:
    """The training seed a run record names."""
    return record["hyperparameters"].get("training.seed")


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
                        customdata=[[href(r), row.label, settings_text(row) or row.strategy, run_seed(r)]
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
            smooth = moving_average(loss, window)
            stride = math.ceil(len(smooth) / MAX_CURVE_POINTS)
            steps = list(range(1, len(smooth) + 1))[::stride]
            diverged = record.get("status") == "diverged"
            fig.add_scatter(x=steps, y=smooth[::stride], mode="lines", line=dict(color=color, width=1.5),
                            name=f"seed {run_seed(record)}" + (" (diverged)" if diverged else ""),
                            legendgroup=f"row{index}", legendgrouptitle_text=title if i == 0 else None,
                            hovertemplate=f"{html.escape(title)}, seed {run_seed(record)}<br>step %{{x}}: "
                                          "loss %{y:.4f}<extra></extra>")
    buttons = [dict(label="show all", method="restyle", args=[{"visible": True}]),
               dict(label="hide all", method="restyle", args=[{"visible": "legendonly"}])]
    _layout(fig, "optimizer step", "training loss (moving average)", height=520,
            legend=dict(groupclick="toggleitem", font=dict(size=11)),
            updatemenus=[dict(type="buttons", direction="right", buttons=buttons, x=0, xanchor="left", y=1.09,
                              yanchor="top", showactive=False, pad=dict(t=0, b=0))])
    fig.update_layout(margin=dict(t=50))
    return fig


def curve_figure(rows: list[Row], metric: str):
    """The validation metric evaluated during training against the step, one line per run with a curve;
    a ring marks the step whose weights the run kept."""
    import plotly.graph_objects as go

    rows = [r for r in rows if any(rec.get("curve") for rec in r.records)]
    if not rows:
        return None
    fig = go.Figure()
    for index, (color, row) in enumerate(zip(_colors(len(rows)), rows)):
        title = f"{row.label} ({settings_text(row)})" if settings_text(row) else row.label
        for i, record in enumerate(r for r in row.records if r.get("curve")):
            points = [(p["step"], float(p[metric])) for p in record["curve"] if is_number(p.get(metric))]
            if not points:
                continue
            steps, values = zip(*points)
            fig.add_scatter(x=steps, y=values, mode="lines+markers", line=dict(color=color, width=1.5),
                            marker=dict(size=4), name=f"seed {run_seed(record)}", legendgroup=f"row{index}",
                            legendgrouptitle_text=title if i == 0 else None,
                            hovertemplate=f"{html.escape(title)}, seed {run_seed(record)}<br>step %{{x}}: "
                                          f"{html.escape(metric)} %{{y:.4f}}<extra></extra>")
            kept = dict(points).get(record.get("kept_step"))
            if kept is not None:
                fig.add_scatter(x=[record["kept_step"]], y=[kept], mode="markers", showlegend=False,
                                marker=dict(size=11, color="rgba(0,0,0,0)", line=dict(color=color, width=2)),
                                legendgroup=f"row{index}", hoverinfo="skip")
    _layout(fig, "optimizer step", f"validation {metric} during training", height=480,
            legend=dict(groupclick="toggleitem", font=dict(size=11)))
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


def intrinsic_figure(record: IntrinsicRecord):
    """The metric against d (log axis) with the baseline, the threshold line and d_int."""
    import plotly.graph_objects as go

    result = record.result
    fig = go.Figure()
    fig.add_scatter(x=[d for d, _ in result.points], y=[s for _, s in result.points], mode="lines+markers",
                    name="subspace training", hovertemplate="d = %{x}: %{y:.4f}<extra></extra>")
    percent = round(100 * result.fraction)
    fig.add_hline(y=result.baseline, line=dict(dash="dash", color="grey"),
                  annotation_text=f"baseline {result.baseline:.4g}", annotation_position="bottom right")
    fig.add_hline(y=result.threshold, line=dict(dash="dot", color="#d62728"),
                  annotation_text=f"{percent}% of baseline: {result.threshold:.4g}",
                  annotation_position="bottom right")
    if result.d_int is not None:
        fig.add_vline(x=result.d_int, line=dict(dash="dashdot", color="#2ca02c"),
                      annotation_text=f"d_int{percent} = {result.d_int}", annotation_position="top left")
    _layout(fig, "subspace dimension d (log scale)", record.metric)
    fig.update_xaxes(type="log")
    return fig
