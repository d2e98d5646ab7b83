import pytest

from loralab.metrics import accuracy, map_at_k, ranking


def test_map_at_3_hand_computed():
    scores = [
        [0.9, 0.1, 0.0, 0.0, 0.0],  # correct (0) ranked 1st -> 1
        [0.2, 0.9, 0.5, 0.0, 0.0],  # correct (0) ranked 3rd -> 1/3
        [0.1, 0.9, 0.0, 0.5, 0.0],  # correct (3) ranked 2nd -> 1/2
        [0.5, 0.4, 0.3, 0.2, 0.1],  # correct (4) ranked 5th -> 0
    ]
    labels = [0, 0, 3, 4]
    assert map_at_k(scores, labels, 3) == pytest.approx((1 + 1 / 3 + 1 / 2 + 0) / 4)
    assert accuracy(scores, labels) == pytest.approx(1 / 4)
    assert map_at_k(scores, labels, 5) == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 5) / 4)


def test_ties_rank_the_earlier_option_first():
    assert ranking([0.5, 0.5, 0.7]) == [2, 0, 1]
    assert map_at_k([[0.5, 0.5, 0.5]], [1], 3) == pytest.approx(1 / 2)


def test_options_of_different_counts():
    assert map_at_k([[0.1, 0.9], [0.3, 0.2, 0.1, 0.0, 0.9]], [1, 0], 3) == pytest.approx((1 + 1 / 2) / 2)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        map_at_k([[0.1, 0.2]], [0, 1])
