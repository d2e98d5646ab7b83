"""`loralab compare`: each fine-tuning method judged at its own best settings, within a time budget.

- `methods`: the methods, each with its own learning-rate bracket and the settings it tries.
- `config`: `CompareConfig`, what a comparison is; `parse_minutes`, the budget.
- `bracket`: one method's successive halving (recommend's rules and verdict, on its own pilots only).
- `budget`: the budget split evenly between the methods, and what each spent (recommend's ledger).
- `driver`: the stages (first pilots, rungs, final runs with seeds) as sweeps into one folder.
- `summary`: `compare.json`, the ranking with noise verdicts, costs and the answer in a sentence.
- `report`: `report.md` and `report.html` from `compare.json`.
"""

from loralab.comparison.config import CompareConfig, parse_minutes
from loralab.comparison.driver import compare
from loralab.comparison.methods import METHODS, Method, parse_methods
from loralab.comparison.report import write_report

__all__ = ["CompareConfig", "METHODS", "Method", "compare", "parse_methods", "parse_minutes", "write_report"]
