"""An intrinsic-dimension measurement as files: `<name>.json` (the record), `<name>.md` and `<name>.png`.

The record holds every scored subspace dimension d, the baseline (the score of training all
weights directly), the threshold `fraction * baseline` and d_int, the smallest scored d reaching it
(Li et al. 2018; the search that finds it is `sweeps/intrinsic.py`). `read_intrinsic` is its one
reader, for the sweep's report page and for redrawing a measurement's page from its record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.errors import LoralabError
from loralab.reports.plots import save_png
from loralab.runs.artifacts import read_json, write_json

INTRINSIC = "intrinsic.json"
"""The record's name beside a sweep's runs, where the report page looks for it."""


@dataclass(frozen=True)
class IntrinsicResult:
    """Every scored d, and the intrinsic dimension they imply."""

    points: tuple[tuple[int, float], ...]
    """(d, score) in increasing d."""
    baseline: float
    """Score of direct training, the 100% mark."""
    fraction: float
    """The threshold's fraction of the baseline."""
    d_int: int | None
    """Smallest scored d reaching the threshold; None if none did."""
    lower: int | None
    """Largest scored d below d_int that missed the threshold; None if d_int is the smallest scored d."""

    @property
    def threshold(self) -> float:
        return self.fraction * self.baseline

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "fraction": self.fraction,
            "threshold": self.threshold,
            "d_int": self.d_int,
            "lower": self.lower,
            "points": [{"d": d, "score": s} for d, s in self.points],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IntrinsicResult":
        """Read back `to_dict()` (or a record written by `write_intrinsic`)."""
        try:
            return cls(
                points=tuple((int(p["d"]), float(p["score"])) for p in data["points"]),
                baseline=float(data["baseline"]),
                fraction=float(data["fraction"]),
                d_int=data.get("d_int"),
                lower=data.get("lower"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise LoralabError(f"not an intrinsic-dimension record: {e!r}") from None


@dataclass(frozen=True)
class IntrinsicRecord:
    """A measurement read back from its JSON record."""

    result: IntrinsicResult
    metric: str
    """What was scored ('score' in records that do not say)."""
    details: dict[str, Any] = field(default_factory=dict)
    """The protocol, as `write_intrinsic` was given it."""


def read_intrinsic(path: str | Path) -> IntrinsicRecord:
    """The record at `path` (`intrinsic.json` or another `<name>.json`); a LoralabError naming it when it is not one."""
    data = read_json(path)
    try:
        result = IntrinsicResult.from_dict(data)
    except LoralabError as e:
        raise LoralabError(f"{path}: {e}") from None
    return IntrinsicRecord(result, str(data.get("metric", "score")), dict(data.get("details") or {}))


def intrinsic_markdown(result: IntrinsicResult, *, metric: str, title: str, plot: str,
                       details: dict[str, Any] | None = None) -> str:
    """The page of an intrinsic-dimension measurement: the verdict, every scored d, the plot, the protocol."""
    label = f"d_int{round(100 * result.fraction)}"
    if result.d_int is None:
        verdict = f"No scored d reached {result.fraction:.0%} of the baseline."
    elif result.lower is None:
        verdict = f"**{label} <= {result.d_int}**: the smallest d scored already reached the threshold."
    else:
        verdict = f"**{label} = {result.d_int}** (d = {result.lower} missed the threshold)."
    lines = [
        f"# {title}",
        "",
        verdict,
        "",
        f"- baseline {metric}: {result.baseline:.4f}",
        f"- threshold ({result.fraction:.0%} of baseline): {result.threshold:.4f}",
        "",
        f"| d | {metric} | reaches threshold |",
        "|---:|---:|:---:|",
        *(f"| {d} | {s:.4f} | {'yes' if s >= result.threshold else 'no'} |" for d, s in result.points),
        "",
        f"![{metric} against d]({plot})",
    ]
    if details:
        lines += ["", "## Protocol", "", *(f"- {key}: {value}" for key, value in details.items())]
    return "\n".join(lines) + "\n"


def plot_intrinsic(result: IntrinsicResult, path: str | Path, *, metric: str = "score", title: str | None = None) -> Path:
    """Score against d on a log axis, with the baseline and the threshold line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    ax.plot([d for d, _ in result.points], [s for _, s in result.points], "o-", color="tab:blue",
            label="subspace training")
    ax.axhline(result.baseline, color="tab:gray", linestyle="--", label=f"baseline {result.baseline:.4g}")
    ax.axhline(result.threshold, color="tab:red", linestyle=":",
               label=f"{result.fraction:.0%} of baseline {result.threshold:.4g}")
    if result.d_int is not None:
        ax.axvline(result.d_int, color="tab:green", linestyle="-.",
                   label=f"d_int{round(100 * result.fraction)} = {result.d_int}")
    ax.set_xscale("log")
    ax.set_xlabel("subspace dimension d")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return save_png(fig, Path(path))


def write_intrinsic(
    result: IntrinsicResult,
    folder: str | Path,
    *,
    name: str = "intrinsic",
    metric: str = "score",
    title: str = "Intrinsic dimension",
    details: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write `<name>.json`, `<name>.md` and `<name>.png` to `folder`; `details` records the protocol."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    details = dict(details or {})
    label = f"d_int{round(100 * result.fraction)}"
    paths = {kind: folder / f"{name}.{kind}" for kind in ("json", "md", "png")}

    record = {"metric": metric, label: result.d_int, **result.to_dict(), "details": details}
    write_json(paths["json"], record)
    plot_intrinsic(result, paths["png"], metric=metric, title=title)
    paths["md"].write_text(intrinsic_markdown(result, metric=metric, title=title, plot=paths["png"].name,
                                              details=details))
    return paths
