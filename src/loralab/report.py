"""Reports built from run records alone: a Markdown table and PNG plots.

`write_report(folder)` reads every `*/run.json` under a sweep's folder (and `sweep.json`, when
present, for the entries' labels and their order), so a report can be rebuilt at any time, from a
finished sweep or a half-finished one, and a crashed run cannot corrupt it: an unreadable record is
listed as such and left out of the numbers.

Runs that differ only in their seed form one row, shown as mean ± sample standard deviation. Two
rows differ "beyond noise" when their means are further apart than twice the standard error of the
difference, sqrt(s1^2/n1 + s2^2/n2) (a rough two-sided 95% rule); a row with a single seed borrows
the pooled seed-to-seed deviation of the repeated rows. This measures training noise on a fixed
validation set; the validation set's own sampling error is reported beside it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.artifacts import RECORD, read_json
from loralab.errors import LoralabError

METRICS = ("map@3", "accuracy")
TABLE = "report.md"
STRATEGY_ORDER = ("full", "attention", "qv", "lora", "subspace")
# Settings that say where a run ran or what it read, not how it trained; never a row's "settings".
_IGNORED = ("device", "offline", "trust_remote_code", "training.seed", "training.eval_batch_size",
            "training.divergence_factor", "training.divergence_window")


@dataclass
class Row:
    """Runs that differ only in their seed."""

    key: str
    label: str
    strategy: str
    settings: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    order: int = 10**9

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") == "completed" and "valid" in r]

    @property
    def diverged(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") == "diverged"]

    def values(self, metric: str) -> list[float]:
        return [r["valid"][metric] for r in self.completed]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values) if values else None

    def sd(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.stdev(values) if len(values) >= 2 else None


@dataclass
class Report:
    """Rows, the runs that could not be used, and the files written."""

    rows: list[Row]
    skipped: list[str]
    files: list[Path] = field(default_factory=list)
    markdown: str = ""


def _is_number(value: Any) -> bool:
    """A number, or one of the strings strict JSON records non-finite numbers as."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("NaN", "Infinity", "-Infinity")


def _key(hyperparameters: dict[str, Any]) -> str:
    return repr(sorted((k, v) for k, v in hyperparameters.items() if k not in _IGNORED))


def load_records(folder: str | Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(run folder name, record) for every readable record under `folder`, and why others were skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoralabError(f"{folder}: no such folder")
    records, skipped = [], []
    for path in sorted(folder.glob(f"**/{RECORD}")):
        name = str(path.parent.relative_to(folder))
        try:
            record = read_json(path)
        except LoralabError as e:
            skipped.append(f"{name}: {e}")
            continue
        if record.get("status") not in ("completed", "diverged") or not isinstance(record.get("hyperparameters"), dict):
            skipped.append(f"{name}: status {record.get('status')!r} (unfinished)")
            continue
        records.append((name, record))
    return records, skipped


def _manifest(folder: Path) -> dict[str, tuple[int, str]]:
    """folder -> (position, label) from sweep.json, when the sweep left one."""
    path = folder / "sweep.json"
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except LoralabError:
        return {}
    return {run["folder"]: (i, " / ".join(run.get("labels", []))) for i, run in enumerate(data.get("runs", []))}


def build_rows(records: list[tuple[str, dict[str, Any]]], manifest: dict[str, tuple[int, str]] | None = None) -> list[Row]:
    """Group records into rows; a row's settings are the ones that vary across the whole report."""
    manifest = manifest or {}
    flats = [r["hyperparameters"] for _, r in records]
    varying = [k for k in (flats[0] if flats else {})
               if k not in _IGNORED and k != "strategy.strategy" and len({repr(f.get(k)) for f in flats}) > 1]
    rows: dict[str, Row] = {}
    for (name, record), flat in zip(records, flats):
        key = _key(flat)
        position, label = manifest.get(name, (10**9, ""))
        row = rows.get(key)
        if row is None:
            settings = {k: flat.get(k) for k in varying}
            row = rows[key] = Row(key, label or record.get("strategy", "?"), record.get("strategy", "?"), settings)
        row.records.append(record)
        row.order = min(row.order, position)
    strategy_rank = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    return sorted(rows.values(), key=lambda r: (r.order, strategy_rank.get(r.strategy, 99),
                                                r.records[0].get("trainable_params", 0)))


_SETTING_NAMES = {"strategy.lora.r": "r", "strategy.lora.alpha": "alpha", "strategy.lora.dropout": "dropout",
                  "strategy.train_head": "head", "training.lr": "lr", "strategy.subspace.dim": "d",
                  "strategy.subspace.projection": "projection", "strategy.subspace.seed": "P seed"}


def _settings_text(row: Row) -> str:
    parts = []
    for key, value in row.settings.items():
        if key.startswith("strategy.lora.") and row.strategy != "lora":
            continue
        if key.startswith("strategy.subspace.") and row.strategy != "subspace":
            continue
        name = _SETTING_NAMES.get(key, key.rsplit(".", 1)[-1])
        if key == "strategy.train_head":
            value = "trained" if value else "frozen"
        elif isinstance(value, float):
            value = f"{value:g}"
        elif isinstance(value, list):
            value = "+".join(map(str, value))
        elif isinstance(value, str) and "/" in value:
            value = Path(value).name
        parts.append(f"{name} {value}")
    return ", ".join(parts)


def _mean_sd(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _pooled_sd(rows: list[Row], metric: str) -> float | None:
    """The seed-to-seed standard deviation pooled over every row with repeats."""
    num = den = 0.0
    for row in rows:
        values = row.values(metric)
        if len(values) >= 2:
            num += statistics.variance(values) * (len(values) - 1)
            den += len(values) - 1
    return math.sqrt(num / den) if den else None


def compare(a: Row, b: Row, metric: str, pooled: float | None) -> tuple[float, float | None]:
    """(mean of a minus mean of b, standard error of that difference or None when unknown)."""
    diff = a.mean(metric) - b.mean(metric)
    terms = []
    for row in (a, b):
        sd = row.sd(metric) if row.sd(metric) is not None else pooled
        if sd is None:
            return diff, None
        terms.append(sd**2 / len(row.values(metric)))
    return diff, math.sqrt(sum(terms))


def _table(rows: list[Row], metric: str) -> list[str]:
    lines = ["| run | strategy | settings | trainable params | train time (s) | peak memory (MB) | MAP@3 | accuracy | seeds |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ok, bad = row.completed, row.diverged
        first = row.records[0]
        time_ = _mean_sd([r["train_seconds"] for r in row.records if "train_seconds" in r], 0)
        memory = _mean_sd([r["peak_memory_mb"] for r in row.records if "peak_memory_mb" in r], 0)
        maps, accs = _mean_sd(row.values("map@3")), _mean_sd(row.values("accuracy"))
        if bad:
            steps = ", ".join(str(r.get("diverged_at_step")) for r in bad)
            note = f"diverged at step {steps}" if not ok else f"({len(bad)} of {len(row.records)} diverged at step {steps})"
            maps = note if not ok else f"{maps} {note}"
            accs = "–" if not ok else accs
        seeds = ", ".join(str(r["hyperparameters"].get("training.seed")) for r in row.records)
        lines.append(f"| {row.label} | {row.strategy} | {_settings_text(row)} | {first.get('trainable_params', 0):,} | "
                     f"{time_} | {memory} | {maps} | {accs} | {seeds} |")
    return lines


def _differences(rows: list[Row], metric: str) -> list[str]:
    scored = [r for r in rows if r.mean(metric) is not None]
    if len(scored) < 2:
        return []
    best = max(scored, key=lambda r: r.mean(metric))
    pooled = _pooled_sd(rows, metric)
    name = "MAP@3" if metric == "map@3" else metric
    lines = [f"## Against the best row ({best.label}: {name} {best.mean(metric):.3f})", ""]
    if pooled is None:
        lines += ["No row has two or more seeds, so training noise is unknown: no difference below can be "
                  "called real or noise.", ""]
    else:
        lines += [f"Pooled seed-to-seed standard deviation of {name}: {pooled:.4f}. A difference is *within noise* "
                  "when it is smaller than twice its standard error (single-seed rows borrow the pooled deviation).",
                  ""]
    lines += [f"| run | settings | Δ {name} | 2 × s.e. | verdict |", "|---|---|---:|---:|---|"]
    for row in scored:
        if row is best:
            continue
        diff, se = compare(row, best, metric, pooled)
        if se is None:
            verdict, bound = "noise unknown (single seed)", "–"
        else:
            verdict = "within noise" if abs(diff) < 2 * se else "worse beyond noise"
            bound = f"{2 * se:.3f}"
        lines.append(f"| {row.label} | {_settings_text(row)} | {diff:+.3f} | {bound} | {verdict} |")
    questions = best.completed[0]["valid"].get("questions", 0)
    acc = best.mean("accuracy")
    if questions:
        lines += ["", f"Sampling error of the validation set itself ({questions} questions): accuracy "
                      f"{acc:.3f} ± {math.sqrt(acc * (1 - acc) / questions):.3f} (binomial standard error); "
                      "seed noise above is measured on this same fixed set."]
    return lines + [""]


def markdown(rows: list[Row], skipped: list[str], metric: str, title: str, description: str = "",
             plots: list[Path] = ()) -> str:
    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    records = [r for row in rows for r in row.records]
    if records:
        first = records[0]
        valid = next((r["valid"] for r in records if "valid" in r), {})
        lines += [f"{len(records)} runs in {len(rows)} rows; base model {first.get('base_model', {}).get('name', '?')} "
                  f"({first.get('total_params', 0):,} parameters); {first.get('train_questions', '?')} training "
                  f"questions, {valid.get('questions', '?')} validation questions. Mean ± sample standard deviation "
                  "over seeds.", ""]
        machines = sorted({f"{r.get('device', '?')} ({r.get('machine', '?')})" for r in records})
        if len(machines) > 1:  # times and memory only compare within one machine and thread count
            lines += ["Runs ran on different devices or thread counts, so their times and memory do not compare "
                      "directly: " + "; ".join(machines) + ".", ""]
        else:
            lines += [f"Device: {machines[0]}.", ""]
    lines += _table(rows, metric) + [""]
    lines += _differences(rows, metric)
    if skipped:
        lines += ["## Records left out", ""] + [f"- {s}" for s in skipped] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


# Plots: matplotlib's object API (Figure, not pyplot), so no global state and no display is needed.

def _slug(metric: str) -> str:
    return metric.replace("@", "")


def _label(metric: str) -> str:
    return "MAP@3" if metric == "map@3" else metric


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig, path: Path) -> Path:
    from loralab.artifacts import _atomic_write

    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return path


def plot_metric_vs_alpha(rows: list[Row], metric: str, out: Path) -> Path | None:
    """The metric against lora_alpha (log axis): one line per LoRA setting other than alpha, seeds as dots."""
    from matplotlib.figure import Figure

    lora = [r for r in rows if r.strategy == "lora" and r.completed]
    if not lora:
        return None
    groups: dict[str, list[Row]] = {}
    for row in lora:
        flat = row.records[0]["hyperparameters"]
        rest = {k: v for k, v in flat.items() if k not in _IGNORED and k != "strategy.lora.alpha"}
        groups.setdefault(repr(sorted(rest.items())), []).append(row)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for color, members in zip(_colors(len(groups)), groups.values()):
        members.sort(key=lambda r: r.records[0]["hyperparameters"]["strategy.lora.alpha"])
        alphas = [m.records[0]["hyperparameters"]["strategy.lora.alpha"] for m in members]
        means = [m.mean(metric) for m in members]
        sds = [m.sd(metric) or 0.0 for m in members]
        text = _settings_text(Row("", "", "lora", {k: v for k, v in members[0].settings.items()
                                                    if k != "strategy.lora.alpha"}))
        ax.errorbar(alphas, means, yerr=sds, marker="o", color=color, capsize=3, label=text or "lora")
        for m, a in zip(members, alphas):
            ax.scatter([a] * len(m.values(metric)), m.values(metric), s=10, color=color, alpha=0.4)
    for row in rows:  # diverged LoRA runs have no metric: a cross on the axis says where they were
        if row.strategy == "lora" and row.diverged:
            alpha = row.records[0]["hyperparameters"]["strategy.lora.alpha"]
            ax.scatter([alpha], [0.0], marker="x", color="red", s=50, transform=ax.get_xaxis_transform(),
                       clip_on=False, label="diverged" if "diverged" not in ax.get_legend_handles_labels()[1] else None)
    for row in rows:  # the other strategies as horizontal references
        if row.strategy != "lora" and row.completed:
            ax.axhline(row.mean(metric), linestyle=":", linewidth=1, color="grey")
            ax.annotate(row.label, (1.0, row.mean(metric)), xycoords=("axes fraction", "data"), fontsize=7,
                        ha="right", va="bottom", color="grey")
    ax.set_xscale("log", base=2)
    alphas = [r.records[0]["hyperparameters"]["strategy.lora.alpha"] for r in rows if r.strategy == "lora"]
    ax.set_xlim(min(alphas) / 1.5, max(alphas) * 1.5)  # the crosses do not widen the axis themselves
    ax.set_xlabel("lora_alpha (log scale)")
    ax.set_ylabel(f"validation {_label(metric)}")
    ax.set_title(f"{_label(metric)} against lora_alpha (mean ± s.d. over seeds)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out / f"{_slug(metric)}_vs_lora_alpha.png")


def best_per_budget(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The front of (parameters, metric) points: those no cheaper point matches or beats."""
    front, best = [], -math.inf
    for params, value in sorted(points, key=lambda p: (p[0], -p[1])):
        if value > best:
            front.append((params, value))
            best = value
    return front


def plot_metric_vs_params(rows: list[Row], metric: str, out: Path) -> Path | None:
    """The metric against trainable parameters (log axis), one point per run, the best-per-budget front marked."""
    from matplotlib.figure import Figure

    points = [(r["trainable_params"], r["valid"][metric], row) for row in rows for r in row.completed]
    if not points:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    strategies = list(dict.fromkeys(row.strategy for _, _, row in points))
    for color, strategy in zip(_colors(len(strategies)), strategies):
        xs = [p for p, _, row in points if row.strategy == strategy]
        ys = [v for _, v, row in points if row.strategy == strategy]
        ax.scatter(xs, ys, color=color, label=strategy, s=22, alpha=0.8)
    front = best_per_budget([(p, v) for p, v, _ in points])
    ax.step([p for p, _ in front], [v for _, v in front], where="post", color="black", linewidth=1,
            label="best per budget")
    ax.scatter([p for p, _ in front], [v for _, v in front], facecolors="none", edgecolors="black", s=70)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel(f"validation {_label(metric)}")
    ax.set_title(f"{_label(metric)} against trainable parameters (one point per run)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out / f"{_slug(metric)}_vs_trainable_params.png")


def _smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_loss_curves(rows: list[Row], out: Path) -> Path | None:
    """Training loss per optimizer step (moving average), one colour per row, one line per seed."""
    from matplotlib.figure import Figure

    rows = [r for r in rows if any(rec.get("loss") for rec in r.records)]
    if not rows:
        return None
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    for color, row in zip(_colors(len(rows)), rows):
        for i, record in enumerate(row.records):
            loss = [float(x) for x in record["loss"] if _is_number(x) and math.isfinite(float(x))]
            if not loss:
                continue
            smooth = _smooth(loss, max(1, len(loss) // 20))
            text = f"{row.label} ({_settings_text(row)})" if _settings_text(row) else row.label
            ax.plot(range(1, len(smooth) + 1), smooth, color=color, linewidth=1, alpha=0.8,
                    label=text if i == 0 else None)
            if record.get("status") == "diverged":
                ax.scatter([len(smooth)], [smooth[-1]], marker="x", color=color, s=40)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (moving average)")
    ax.set_title("Training loss (x: diverged)")
    ax.legend(fontsize=6, ncol=2 if len(rows) > 8 else 1)
    ax.grid(alpha=0.3)
    return _save(fig, out / "loss_curves.png")


def write_report(folder: str | Path, out: str | Path | None = None, *, metric: str = "map@3",
                 title: str | None = None) -> Report:
    """Read the records under `folder`; write `report.md` and the plots into `out` (default: `folder`)."""
    if metric not in METRICS:
        raise LoralabError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    records, skipped = load_records(folder)
    if not records:
        raise LoralabError(f"{folder}: no finished run records (*/run.json) to report on"
                           + (f"; left out: {'; '.join(skipped)}" if skipped else ""))
    manifest_path = folder / "sweep.json"
    info = read_json(manifest_path) if manifest_path.is_file() else {}
    rows = build_rows(records, _manifest(folder))
    out.mkdir(parents=True, exist_ok=True)
    files = [p for p in (plot_metric_vs_alpha(rows, metric, out), plot_metric_vs_params(rows, metric, out),
                         plot_loss_curves(rows, out)) if p is not None]
    text = markdown(rows, skipped, metric, title or f"{info.get('experiment', folder.name)}: results",
                    info.get("description", ""), files)
    from loralab.artifacts import _atomic_write

    _atomic_write(out / TABLE, lambda tmp: Path(tmp).write_text(text))
    return Report(rows, skipped, files + [out / TABLE], text)
