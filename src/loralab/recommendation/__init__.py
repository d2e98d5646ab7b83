"""`loralab recommend`: which model, strategy and settings to train on your data, within a time budget.

Candidates (a model with a method) that fit the memory limit (`memory.py`), each with a
learning-rate range fitting its method (`space.py`), are each searched by successive halving over
short pilot runs within its own share of a budget (`halving.py`, `search.py`, `standing.py`, with
Optuna's sampler and storage; `config.py`, `ledger.py`); the
winner (`verdict.py`) is trained on all the data, and `driver.py` writes what the search found to
`recommendation.json`, from which a report says why it won and what it costs (`report.py`). Where
each file of a search lives: `folder.py`.
"""

from loralab.recommendation.config import RecommendConfig, parse_budget
from loralab.recommendation.driver import recommend
from loralab.recommendation.memory import parse_memory
from loralab.recommendation.space import Candidate, candidates

__all__ = ["Candidate", "RecommendConfig", "candidates", "parse_budget", "parse_memory", "recommend"]
