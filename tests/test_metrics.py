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


def onehot(predicted, classes=2):
    return [[1.0 if c == p else 0.0 for c in range(classes)] for p in predicted]


def test_f1_and_matthews_hand_computed():
    from loralab.metrics import f1, mcc

    labels = [1, 1, 1, 0, 0, 0, 1, 0]
    predicted = [1, 1, 0, 0, 1, 0, 1, 0]  # tp 3, fn 1, fp 1, tn 3
    scores = onehot(predicted)
    assert f1(scores, labels) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert mcc(scores, labels) == pytest.approx((3 * 3 - 1 * 1) / ((3 + 1) * (3 + 1) * (3 + 1) * (3 + 1)) ** 0.5)
    assert mcc(onehot([1] * 8), labels) == 0.0  # a constant prediction carries no correlation
    assert mcc(onehot(labels), labels) == pytest.approx(1.0)
    assert mcc(onehot([1 - y for y in labels]), labels) == pytest.approx(-1.0)
    # three classes: MCC in Gorodkin's form, checked against the formula written out by hand
    labels3, predicted3 = [0, 1, 2, 2, 1, 0], [0, 2, 2, 2, 1, 1]
    c, s = 4, 6
    t, p = [2, 2, 2], [1, 2, 3]
    expected = (c * s - sum(a * b for a, b in zip(t, p))) / (
        (s * s - sum(x * x for x in p)) ** 0.5 * (s * s - sum(x * x for x in t)) ** 0.5)
    assert mcc(onehot(predicted3, 3), labels3) == pytest.approx(expected)


def test_pearson_spearman_and_mse_hand_computed():
    from loralab.metrics import mse, pearson, spearman

    predicted, gold = [[1.0], [2.0], [3.0], [4.0]], [2.0, 4.0, 6.0, 9.0]
    mx, my = 2.5, 5.25
    sxy = sum((a[0] - mx) * (b - my) for a, b in zip(predicted, gold))
    sxx = sum((a[0] - mx) ** 2 for a in predicted)
    syy = sum((b - my) ** 2 for b in gold)
    assert pearson(predicted, gold) == pytest.approx(sxy / (sxx * syy) ** 0.5)
    assert spearman(predicted, gold) == pytest.approx(1.0)  # monotone, not linear
    assert spearman([[1.0], [2.0], [2.0], [3.0]], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(
        pearson([[1.0], [2.5], [2.5], [4.0]], [1.0, 3.0, 2.0, 4.0]))  # ties share their mean rank
    assert mse(predicted, gold) == pytest.approx((1 + 4 + 9 + 25) / 4)


def test_a_correlation_over_constant_labels_is_undefined():
    from loralab.metrics import pearson, shown, spearman

    assert pearson([[0.1], [0.5], [0.9]], [2.0, 2.0, 2.0]) is None
    assert spearman([[0.1], [0.5], [0.9]], [2.0, 2.0, 2.0]) is None
    assert pearson([[0.5], [0.5], [0.5]], [1.0, 2.0, 3.0]) == 0.0  # constant predictions: as before
    assert shown(None) == "undefined" and shown(0.5) == "0.5000"


def test_cross_entropy_is_the_training_loss_of_a_choice_task():
    import torch

    from loralab.metrics import cross_entropy

    generator = torch.Generator().manual_seed(0)
    scores = (torch.randn(7, 4, generator=generator) * 30).tolist()  # large logits: a naive exp would overflow
    labels = [0, 3, 1, 2, 2, 0, 1]
    expected = torch.nn.functional.cross_entropy(torch.tensor(scores, dtype=torch.float64), torch.tensor(labels))
    assert cross_entropy(scores, labels) == pytest.approx(float(expected), rel=1e-9)
    assert cross_entropy([[0.0, 0.0]], [1]) == pytest.approx(0.6931471805599453)  # log 2: no preference


def test_a_records_validation_loss_is_its_tasks_loss():
    from loralab.metrics import validation_loss

    assert validation_loss({"accuracy": 0.5, "mcc": 0.0, "cross_entropy": 0.61}) == 0.61
    assert validation_loss({"pearson": 0.8, "mse": 0.4}) == 0.4  # regression trains on the squared error
    assert validation_loss({"perplexity": 9.0, "loss": 2.2}) == 2.2
    assert validation_loss({"accuracy": 0.5, "mcc": 0.0}) is None  # a record from before choice losses
    assert validation_loss({"cross_entropy": float("nan")}) is None
