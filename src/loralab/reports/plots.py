"""The PNG plots of a report (an intrinsic-dimension measurement's plot: `intrinsic.py`).

matplotlib's object API (Figure, not pyplot), so no global state and no display is needed; matplotlib
is imported inside each function, so reading records and writing Markdown never pays for it.
"""

from __future__ import annotations

import math
from pathlib import Path

from loralab.runs.artifacts import _atomic_write
from loralab.reports.rows import IGNORED, Row, higher_is_better, is_number, metric_label, metric_value, settings_text


def _slug(metric: str) -> str:
    return metric.replace("@", "")


def _name(stem: str, tag: str) -> str:
    """A plot's file name; `tag` tells apart the plots of a report's several data sets."""
    return f"{stem}_{tag}.png" if tag else f"{stem}.png"


def _title(ax, title: str, subtitle: str) -> None:
    if subtitle:  # the data set on a second line, smaller, so that two lines fit above the axes
        ax.set_title(f"{title}\n{subtitle}", fontsize="medium")
    else:
        ax.set_title(title)


def colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def save_png(fig, path: Path) -> Path:
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return path


def lora_alpha(row: Row) -> float:
    return row.records[0]["hyperparameters"]["strategy.lora.alpha"]


def alpha_groups(rows: list[Row], metric: str) -> list[tuple[str, list[Row]]]:
    """The scored LoRA rows in lines of equal settings but alpha: (those settings in words, rows by alpha)."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.strategy == "lora" and row.mean(metric) is not None:
            flat = row.records[0]["hyperparameters"]
            rest = {k: v for k, v in flat.items() if k not in IGNORED and k != "strategy.lora.alpha"}
            groups.setdefault(repr(sorted(rest.items())), []).append(row)
    return [(settings_text(Row("", "", "lora", {k: v for k, v in members[0].settings.items()
                                                 if k != "strategy.lora.alpha"})), sorted(members, key=lora_alpha))
            for members in groups.values()]


def plot_metric_vs_alpha(rows: list[Row], metric: str, out: Path, *, tag: str = "", subtitle: str = "") -> Path | None:
    """The metric against lora_alpha (log axis): one line per LoRA setting other than alpha, seeds as dots."""
    from matplotlib.figure import Figure

    groups = alpha_groups(rows, metric)
    if not groups:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for color, (text, members) in zip(colors(len(groups)), groups):
        alphas = [lora_alpha(m) for m in members]
        means = [m.mean(metric) for m in members]
        sds = [m.sd(metric) or 0.0 for m in members]
        ax.errorbar(alphas, means, yerr=sds, marker="o", color=color, capsize=3, label=text or "lora")
        for m, a in zip(members, alphas):
            ax.scatter([a] * len(m.values(metric)), m.values(metric), s=10, color=color, alpha=0.4)
    for row in rows:  # diverged LoRA runs have no metric: a cross on the axis says where they were
        if row.strategy == "lora" and row.diverged:
            ax.scatter([lora_alpha(row)], [0.0], marker="x", color="red", s=50, transform=ax.get_xaxis_transform(),
                       clip_on=False, label="diverged" if "diverged" not in ax.get_legend_handles_labels()[1] else None)
    for row in rows:  # the other strategies as horizontal references
        if row.strategy != "lora" and row.mean(metric) is not None:
            ax.axhline(row.mean(metric), linestyle=":", linewidth=1, color="grey")
            ax.annotate(row.label, (1.0, row.mean(metric)), xycoords=("axes fraction", "data"), fontsize=7,
                        ha="right", va="bottom", color="grey")
    ax.set_xscale("log", base=2)
    alphas = [lora_alpha(r) for r in rows if r.strategy == "lora"]
    ax.set_xlim(min(alphas) / 1.5, max(alphas) * 1.5)  # the crosses do not widen the axis themselves
    ax.set_xlabel("lora_alpha (log scale)")
    ax.set_ylabel(f"validation {metric_label(metric)}")
    _title(ax, f"{metric_label(metric)} against lora_alpha (mean ± s.d. over seeds)", subtitle)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_png(fig, out / _name(f"{_slug(metric)}_vs_lora_alpha", tag))


SAME_BUDGET = 0.01
"""Costs within 1% of the cheapest of them are one budget: LoRA with its head frozen (73,728 parameters)
is not a cheaper budget than LoRA with it trained (74,113), and a front that stepped between the two
would drop from the best run of that budget to its worst."""


def best_per_budget(points: list[tuple[float, float]], higher_is_better: bool = True,
                    tolerance: float = SAME_BUDGET) -> list[tuple[float, float]]:
    """The Pareto front of (cost, metric) points, cheapest first.

    Costs are grouped into budgets, cheapest first, each holding the costs up to (1 + `tolerance`)
    times its cheapest. A budget's best point (the cheaper one on a tie) is on the front when it beats
    the best of every cheaper budget: the front passes through the best point of each budget it
    includes, never another one of that budget, and leaves off a costlier point that only ties a
    cheaper one. Points whose metric is NaN or infinite are left out.
    """
    sign = 1.0 if higher_is_better else -1.0  # compare sign * value, so that larger is always better
    budgets: list[list[tuple[float, float]]] = []
    for cost, value in sorted(p for p in points if math.isfinite(p[1])):
        if budgets and cost <= budgets[-1][0][0] * (1 + tolerance):
            budgets[-1].append((cost, value))
        else:
            budgets.append([(cost, value)])
    front, record = [], -math.inf
    for budget in budgets:
        cost, value = max(budget, key=lambda p: (sign * p[1], -p[0]))
        if sign * value > record:
            front.append((cost, value))
            record = sign * value
    return front


def run_points(rows: list[Row], metric: str, cost: str = "trainable_params") -> list[tuple[float, float, Row, dict]]:
    """(cost, metric, row, record) for every completed run reporting the metric and its `cost` (a record
    field: trainable_params, train_seconds, peak_memory_mb) as finite numbers."""
    return [(float(r[cost]), value, row, r) for row in rows for r in row.completed
            if (value := metric_value(r, metric)) is not None and is_number(r.get(cost)) and math.isfinite(float(r[cost]))]


def budget_front(rows: list[Row], metric: str, cost: str = "trainable_params") -> list[tuple[float, float]]:
    """The best-per-budget front of the rows' runs, in the metric's own direction (lowest MSE is best)."""
    return best_per_budget([(c, v) for c, v, _, _ in run_points(rows, metric, cost)], higher_is_better(metric))


def plot_metric_vs_params(rows: list[Row], metric: str, out: Path, *, tag: str = "", subtitle: str = "") -> Path | None:
    """The metric against trainable parameters (log axis), one point per run, the best-per-budget front marked."""
    from matplotlib.figure import Figure

    points = run_points(rows, metric)
    if not points:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    strategies = list(dict.fromkeys(row.strategy for _, _, row, _ in points))
    for color, strategy in zip(colors(len(strategies)), strategies):
        xs = [p for p, _, row, _ in points if row.strategy == strategy]
        ys = [v for _, v, row, _ in points if row.strategy == strategy]
        ax.scatter(xs, ys, color=color, label=strategy, s=22, alpha=0.8)
    front = budget_front(rows, metric)
    ax.step([p for p, _ in front], [v for _, v in front], where="post", color="black", linewidth=1,
            label="best per budget")
    ax.scatter([p for p, _ in front], [v for _, v in front], facecolors="none", edgecolors="black", s=70)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel(f"validation {metric_label(metric)}")
    _title(ax, f"{metric_label(metric)} against trainable parameters (one point per run)", subtitle)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_png(fig, out / _name(f"{_slug(metric)}_vs_trainable_params", tag))


def plot_metric_vs_cost(rows: list[Row], metric: str, out: Path, *, tag: str = "", subtitle: str = "") -> Path | None:
    """The metric against peak memory and against training time, one colour per row, one point per run.

    Drawn only for rows on more than one base model (a ladder of model sizes), where what a run
    costs differs by more than its strategy.
    """
    from matplotlib.figure import Figure

    runs = [(row, r, value) for row in rows for r in row.completed if (value := metric_value(r, metric)) is not None]
    if len({str(r.get("config", {}).get("model")) for _, r, _ in runs}) < 2:
        return None
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    labels = list(dict.fromkeys(row.label for row, _, _ in runs))
    for color, label in zip(colors(len(labels)), labels):
        mine = [(r, v) for row, r, v in runs if row.label == label]
        axes[0].scatter([r["peak_memory_mb"] / 1024 for r, _ in mine], [v for _, v in mine], color=color, label=label,
                        s=28, alpha=0.85)
        axes[1].scatter([r["train_seconds"] / 60 for r, _ in mine], [v for _, v in mine], color=color, s=28, alpha=0.85)
    axes[0].set_xlabel("peak memory of training (GB)")
    axes[1].set_xlabel("training time (minutes)")
    axes[0].set_ylabel(f"validation {metric_label(metric)}")
    for ax in axes:
        ax.grid(alpha=0.3)
    _title(axes[0], f"{metric_label(metric)} against peak memory", subtitle)
    _title(axes[1], f"{metric_label(metric)} against training time", subtitle)
    axes[0].legend(fontsize=7)
    return save_png(fig, out / _name(f"{_slug(metric)}_vs_memory_and_time", tag))


def moving_average(values: list[float], window: int) -> list[float]:
    """The mean of each value and the window - 1 before it (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_loss_curves(rows: list[Row], out: Path, *, tag: str = "", subtitle: str = "") -> Path | None:
    """Training loss per optimizer step (moving average), one colour per row, one line per seed."""
    from matplotlib.figure import Figure

    rows = [r for r in rows if any(rec.get("loss") for rec in r.records)]
    if not rows:
        return None
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    for color, row in zip(colors(len(rows)), rows):
        for i, record in enumerate(row.records):
            loss = [float(x) for x in record["loss"] if is_number(x) and math.isfinite(float(x))]
            if not loss:
                continue
            smooth = moving_average(loss, max(1, len(loss) // 20))
            text = f"{row.label} ({settings_text(row)})" if settings_text(row) else row.label
            ax.plot(range(1, len(smooth) + 1), smooth, color=color, linewidth=1, alpha=0.8,
                    label=text if i == 0 else None)
            if record.get("status") == "diverged":
                ax.scatter([len(smooth)], [smooth[-1]], marker="x", color=color, s=40)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (moving average)")
    _title(ax, "Training loss (x: diverged)", subtitle)
    ax.legend(fontsize=6, ncol=2 if len(rows) > 8 else 1)
    ax.grid(alpha=0.3)
    return save_png(fig, out / _name("loss_curves", tag))


def plot_validation_curves(rows: list[Row], metric: str, out: Path, *, tag: str = "",
                           subtitle: str = "") -> Path | None:
    """The validation metric evaluated during training against the step, one line per run that has a
    curve; a ring at the step whose weights the run kept."""
    from matplotlib.figure import Figure

    rows = [r for r in rows if any(rec.get("curve") for rec in r.records)]
    if not rows:
        return None
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    for color, row in zip(colors(len(rows)), rows):
        text = f"{row.label} ({settings_text(row)})" if settings_text(row) else row.label
        for i, record in enumerate(r for r in row.records if r.get("curve")):
            points = dict((p["step"], float(p[metric])) for p in record["curve"] if is_number(p.get(metric)))
            if not points:
                continue
            ax.plot(list(points), list(points.values()), color=color, linewidth=1, marker=".",
                    label=text if i == 0 else None)
            if record.get("kept_step") in points:
                ax.scatter([record["kept_step"]], [points[record["kept_step"]]], s=80, facecolors="none",
                           edgecolors=[color])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"validation {metric_label(metric)}")
    _title(ax, f"Validation {metric_label(metric)} during training (ring: kept weights)", subtitle)
    ax.legend(fontsize=6, ncol=2 if len(rows) > 8 else 1)
    ax.grid(alpha=0.3)
    return save_png(fig, out / _name(f"{_slug(metric)}_during_training", tag))
