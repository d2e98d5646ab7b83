"""`loralab recommend`: which model, strategy and settings to train on your data, within a time budget.

Candidates that fit the memory limit (`memory.py`), each with a learning-rate range fitting its
strategy (`space.py`), are compared by successive halving over short pilot runs (`halving.py`,
`search.py`, with Optuna's sampler and storage); the winner is trained on all the data and a report
says why it won and what it costs (`report.py`).
"""

from loralab.recommend.memory import parse_memory
from loralab.recommend.search import RecommendConfig, parse_budget, recommend
from loralab.recommend.space import Candidate, candidates

__all__ = ["Candidate", "RecommendConfig", "candidates", "parse_budget", "parse_memory", "recommend"]
