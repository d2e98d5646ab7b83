"""The d_int90 search on synthetic score curves (its files: tests/reports/test_intrinsic.py)."""

from __future__ import annotations

import pytest

from loralab.errors import LoralabError
from loralab.sweeps.intrinsic import SearchConfig, find_intrinsic_dim


def ramp(knee: int, top: float = 1.0):
    """A monotone score reaching `top` at d = knee, linear below it."""
    calls = []

    def score(d: int) -> float:
        calls.append(d)
        return top * min(1.0, d / knee)

    return score, calls


@pytest.mark.parametrize("knee, expected", [(830, 750), (1000, 900), (5000, 4500), (137, 130)])
def test_finds_the_smallest_d_reaching_the_threshold(knee, expected):
    score, calls = ramp(knee)
    result = find_intrinsic_dim(score, 1.0, SearchConfig(d_min=10, d_max=10_000, resolution=10))
    assert result.d_int == expected  # the first multiple of 10 with d / knee >= 0.9
    assert result.lower == expected - 10
    assert result.threshold == pytest.approx(0.9)
    assert len(calls) == len(set(calls)) < 25  # each d scored once, and few of them
    assert [d for d, _ in result.points] == sorted(calls)


def test_stops_the_coarse_grid_soon_after_the_crossing():
    score, calls = ramp(100)
    find_intrinsic_dim(score, 1.0, SearchConfig(d_min=10, d_max=100_000, per_decade=1, after_crossing=1, resolution=1))
    assert max(calls) == 1000  # crossing at 100, one more coarse point, then bisection below 100


def test_reports_none_when_no_d_is_good_enough_and_a_bound_when_all_are():
    never = find_intrinsic_dim(lambda d: 0.5, 1.0, SearchConfig(d_min=10, d_max=100))
    assert never.d_int is None and never.lower is None
    always = find_intrinsic_dim(lambda d: 1.0, 1.0, SearchConfig(d_min=10, d_max=100))
    assert always.d_int == 10 and always.lower is None


def test_calls_back_after_each_point():
    seen = []
    result = find_intrinsic_dim(lambda d: min(1.0, d / 400), 1.0, SearchConfig(d_min=10, d_max=1000),
                                on_point=lambda d, s: seen.append((d, s)))
    assert sorted(seen) == list(result.points)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(d_min=0), "d_min=0"),
        (dict(d_min=100, d_max=10), "d_max=10"),
        (dict(fraction=1.5), "fraction=1.5"),
        (dict(resolution=0), "resolution=0"),
        (dict(after_crossing=-1), "after_crossing=-1"),
    ],
)
def test_config_errors_name_the_field_and_value(kwargs, message):
    with pytest.raises(LoralabError, match=message):
        SearchConfig(**kwargs)


def test_grid_is_log_spaced_and_ends_at_d_max():
    assert SearchConfig(d_min=10, d_max=1000, per_decade=2).grid() == (10, 32, 100, 316, 1000)

