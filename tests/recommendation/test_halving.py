"""Successive halving as an Optuna pruner: a bracket's rung keeps its best 1/eta, judged together."""

from __future__ import annotations

import math

import optuna
import pytest

from loralab.recommendation.halving import (BRACKET, LOSS, BracketPruner, bracket_cost, bracket_shape, rung_steps,
                                           survivors)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_rungs_multiply_the_steps_and_keep_a_third():
    assert rung_steps(16, 3, 3) == (16, 48, 144)
    assert [survivors(n, 3) for n in (1, 2, 3, 8, 9)] == [1, 1, 1, 2, 3]


def _bracket(study: optuna.Study, name: str, values: list[float], step: int = 4) -> list[optuna.Trial]:
    trials = []
    for value in values:
        trial = study.ask()
        trial.set_user_attr(BRACKET, name)
        trial.report(value, step)
        trials.append(trial)
    return trials


@pytest.mark.parametrize("direction,best", [("maximize", {4, 5}), ("minimize", {0, 1})])
def test_the_best_third_of_a_bracket_survives_whatever_order_it_is_judged_in(direction, best):
    study = optuna.create_study(direction=direction, pruner=BracketPruner(eta=3))
    trials = _bracket(study, "a", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    _bracket(study, "b", [0.9, 0.95, 0.99])  # another bracket's better scores do not count
    assert {t.number for t in trials if not t.should_prune()} == best


def test_a_nan_score_is_pruned_and_never_counts_as_best():
    study = optuna.create_study(direction="minimize", pruner=BracketPruner(eta=2))
    trials = _bracket(study, "a", [math.nan, 0.5, 0.7, 0.9])
    assert [t.should_prune() for t in trials] == [True, False, False, True]


def test_trials_that_score_alike_are_told_apart_by_their_validation_loss():
    """Six pilots all at the majority class (accuracy 0.5): the two lowest validation losses go on, not the
    two first trials; a trial without a recorded loss (a study from before) ranks after those with one."""
    study = optuna.create_study(direction="maximize", pruner=BracketPruner(eta=3))
    trials = _bracket(study, "a", [0.5] * 6)
    for trial, loss in zip(trials, [0.69, 0.66, None, 0.62, 0.70, 0.64]):
        if loss is not None:
            trial.set_user_attr(f"{LOSS}4", loss)
    assert {t.number for t in trials if not t.should_prune()} == {3, 5}
    plain = optuna.create_study(direction="maximize", pruner=BracketPruner(eta=3))
    assert {t.number for t in _bracket(plain, "a", [0.5] * 6) if not t.should_prune()} == {0, 1}  # as before


def test_optunas_asynchronous_pruner_lets_a_lone_first_trial_through():
    """Why the bracket is judged together: ASHA judging each trial as it reports promotes the first,
    however bad, since it has no rival yet."""
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=4, reduction_factor=3))
    first = study.ask()
    first.report(0.0, 4)  # the worst score the bracket will see
    assert not first.should_prune()
    ours = optuna.create_study(direction="maximize", pruner=BracketPruner(eta=3))
    trials = _bracket(ours, "a", [0.0, 0.5, 0.6])
    assert trials[0].should_prune()


def test_a_bracket_is_sized_to_fit_its_share():
    costs = (10.0, 30.0)  # a pilot at each rung
    assert bracket_cost(4, costs, eta=2) == 4 * 10 + 2 * 30
    assert bracket_shape(100.0, costs, eta=2, most=8) == (4, 2)
    assert bracket_shape(1000.0, costs, eta=2, most=8) == (8, 2)  # never more than asked
    assert bracket_shape(35.0, costs, eta=2, most=8) == (1, 1)  # one setting, as many rungs as fit
    assert bracket_shape(5.0, costs, eta=2, most=8) == (0, 0)  # not even one first-rung pilot
