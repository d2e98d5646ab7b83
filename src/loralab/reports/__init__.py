"""Reports built from run records alone: a Markdown table, PNG plots and an interactive HTML page.

`write_report(folder)` reads every `*/run.json` under a sweep's folder (and `sweep.json`, when
present, for the entries' labels and their order), so a report can be rebuilt at any time, from a
finished sweep or a half-finished one, and a crashed run cannot corrupt it: an unreadable record is
listed as such and left out of the numbers. Records of several data sets (task, training file,
validation file) make one section each, with its own table, best row, noise verdicts and plots.

- `write`: `write_report` and `write_page`, which read the folder and write the files below.
- `rows`: records grouped into sections and rows of seeds; means, standard deviations, noise verdicts.
- `markdown`: the text of `report.md`.
- `plots`: the PNG files.
- `html`: `report.html`, one self-contained interactive page (plotly, inlined), which a running
  sweep rewrites after each run (`write_page`); its figures are in `figures`.
- `intrinsic`: an intrinsic-dimension measurement's record (`intrinsic.json`), page and plot.
"""

from loralab.reports.intrinsic import (IntrinsicResult, intrinsic_markdown, plot_intrinsic, read_intrinsic,
                                       write_intrinsic)
from loralab.reports.markdown import report_markdown
from loralab.reports.plots import (best_per_budget, budget_front, plot_loss_curves, plot_metric_vs_alpha,
                                   plot_metric_vs_cost, plot_metric_vs_params)
from loralab.reports.rows import (Comparison, Row, Section, Verdicts, against_best, build_rows, build_sections,
                                  compare, load_records, read_manifest)
from loralab.reports.write import TABLE, Report, write_page, write_report

__all__ = ["Comparison", "IntrinsicResult", "Report", "Row", "Section", "TABLE", "Verdicts", "against_best",
           "best_per_budget", "budget_front", "build_rows", "build_sections", "compare", "intrinsic_markdown",
           "load_records", "plot_intrinsic", "plot_loss_curves", "plot_metric_vs_alpha", "plot_metric_vs_cost",
           "plot_metric_vs_params", "read_intrinsic", "read_manifest", "report_markdown", "write_intrinsic",
           "write_page", "write_report"]
