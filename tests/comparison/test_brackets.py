"""Each method's bracket and the budget, with fake scores and a fake ledger: no model, no training."""

from __future__ import annotations

import math

import pytest

from loralab.comparison import METHODS, parse_methods, parse_minutes
from loralab.comparison.bracket import FILLED_LEAST, Bracket, fill, ladder
from loralab.recommendation.halving import bracket_cost
from loralab.comparison.budget import Budget
from loralab.comparison.methods import spread
from loralab.errors import LoralabError
from loralab.recommendation.ledger import Ledger


def test_the_first_settings_span_the_learning_rate_bracket():
    assert [spread(i) for i in range(6)] == [0.5, 0.0, 1.0, 0.25, 0.75, 0.125]
    for method in METHODS.values():
        low, high = method.lr_range
        settings = method.settings(6)
        rates = [s["lr"] for s in settings]
        assert rates[1] == pytest.approx(low, rel=0.05) and rates[2] == pytest.approx(high, rel=0.05)
        assert all(low * 0.95 <= r <= high * 1.05 for r in rates) and len({repr(s) for s in settings}) == 6
        assert len(set(rates)) >= 4  # a method with two choices may try a rate with each
    lora = METHODS["lora"].settings(4)
    assert [s["lora_targets"] for s in lora] == [("query", "value"), ("all-linear",)] * 2  # both targets tried early
    assert {s["lora_r"] for s in lora} == {8, 16}
    assert {s["lora_plus_ratio"] for s in METHODS["lora+"].settings(2)} == {16.0, 4.0}


def test_a_slow_method_competes_only_with_itself():
    """Full fine-tuning's pilots all score far above VeRA's after a few steps; VeRA's bracket still keeps
    its own best and goes on, as a shared bracket would not."""
    fast = Bracket.of(METHODS["full"], 6, min_steps=4, eta=3, rungs=2)
    slow = Bracket.of(METHODS["vera"], 6, min_steps=4, eta=3, rungs=2)
    vera = {0: 0.30, 1: 0.31, 2: 0.29, 3: 0.33, 4: 0.36, 5: 0.30}

    def fast_score(i, steps):
        return 0.90 + i / 100

    def slow_score(i, steps):
        return vera[i] if steps == 4 else {4: 0.45, 3: 0.40}.get(i)

    assert fast.entrants(1, fast_score) == [5, 4]
    assert slow.entrants(1, slow_score) == [4, 3]  # survivors(6, 3) = 2, of VeRA's own
    verdict = slow.best(slow_score, "map@3", 100)
    assert verdict.winner.number == 4 and verdict.steps == 12
    assert [p.state for p in slow.pilots(slow_score)] == ["pruned"] * 3 + ["complete"] * 2 + ["pruned"]
    # Pooled with full's, none of VeRA's settings would have been among the best 4 of 12.
    pooled = sorted([fast_score(i, 4) for i in range(6)] + list(vera.values()), reverse=True)[:4]
    assert min(pooled) > max(vera.values())


def test_rungs_follow_what_ran():
    bracket = Bracket.of(METHODS["lora"], 6, min_steps=2, eta=2, rungs=3)
    assert bracket.steps == (2, 4, 8)
    cut = {0: 0.5, 1: 0.7, 2: 0.6}  # the budget cut the first rung to three settings

    def score(i, steps):
        return cut.get(i) if steps == 2 else None

    assert bracket.entrants(1, score) == [1]  # floor(3 / 2) of the three that ran
    assert bracket.entrants(2, score) is None  # rung 2 (4 steps) has not run
    one = {0: 0.5}
    assert bracket.entrants(1, lambda i, s: one.get(i) if s == 2 else None) is None  # a single setting: no rung
    nan = {0: math.nan, 1: 0.4}  # a diverged pilot ranks last
    assert bracket.entrants(1, lambda i, s: nan.get(i) if s == 2 else None) == [1]


def test_a_rung_never_separates_pilots_it_scored_alike():
    """Pilots tied with the last survivor go on with it: at a few steps every CoLA pilot scored Matthews 0.000,
    and cutting that tie by the settings' order would prune at random."""
    bracket = Bracket.of(METHODS["lora"], 6, min_steps=16, eta=3, rungs=3)
    majority = {i: 0.0 for i in range(6)}
    assert bracket.entrants(1, lambda i, s: majority.get(i) if s == 16 else None) == [0, 1, 2, 3, 4, 5]
    scores = {0: 0.0, 1: 0.2, 2: 0.0, 3: 0.1, 4: 0.1, 5: 0.0}
    assert bracket.entrants(1, lambda i, s: scores.get(i) if s == 16 else None) == [1, 3, 4]  # 4 ties with 3
    old = Bracket.of(METHODS["lora"], 6, min_steps=16, eta=3, rungs=3, keep_ties=False)  # a folder planned before
    assert old.entrants(1, lambda i, s: scores.get(i) if s == 16 else None) == [1, 3]
    diverged = {i: math.nan for i in range(6)}  # a tie of diverged pilots is no tie worth keeping
    assert bracket.entrants(1, lambda i, s: diverged.get(i) if s == 16 else None) == [0, 1]


def test_every_combination_of_choices_spans_the_rates_and_no_setting_repeats():
    """A filled bracket has up to 64 settings: each combination of a method's choices must try the whole
    range. Before, the rate followed one van der Corput sequence across all settings, so a combination
    revisited every 8 settings stayed within an eighth of the range, and settings repeated."""
    for name in ("lora", "vera", "full", "lora+"):
        method = METHODS[name]
        low, high = method.lr_range
        settings = method.settings(64)
        assert len(settings) == 64 and len({repr(sorted(s.items())) for s in settings}) == 64
        assert settings[:3] == method.settings(3, per_choice=False)  # the first round as before: middle, ends
        by_choice: dict[str, list[float]] = {}
        for s in settings:
            by_choice.setdefault(repr(sorted((k, v) for k, v in s.items() if k != "lr")), []).append(s["lr"])
        for rates in by_choice.values():
            if len(rates) >= 4:  # a combination tried four times or more reaches both outer quarters of the range
                at = sorted(math.log(r / low) / math.log(high / low) for r in rates)
                assert at[0] <= 0.3 and at[-1] >= 0.7, (name, rates)  # quarters, less two figures' rounding
    old = METHODS["vera"].settings(64, per_choice=False)  # the old order, for folders planned with it
    qv = [s["lr"] for s in old if s["vera_targets"] == METHODS["vera"].choices["vera_targets"][0]]
    assert min(qv) > 0.03 and len({repr(sorted(s.items())) for s in old}) < 64  # half the range; repeats


def test_pilots_that_score_alike_are_told_apart_by_their_validation_loss():
    """All 44 of full fine-tuning's 16-step pilots on CoLA scored Matthews 0.000; carried on together they
    spent a filled bracket's share on its second rung. Their validation losses differ, and rank them."""
    bracket = Bracket.of(METHODS["lora"], 6, min_steps=16, eta=3, rungs=3)
    majority = {i: 0.0 for i in range(6)}
    losses = {0: 0.64, 1: 0.61, 2: 0.70, 3: 0.60, 4: 0.66, 5: 0.62}
    score = lambda i, s: majority.get(i) if s == 16 else None  # noqa: E731
    loss = lambda i, s: losses.get(i) if s == 16 else None  # noqa: E731
    assert bracket.entrants(1, score, loss) == [3, 1]  # survivors(6, 3) = 2, the lowest losses
    scores = {0: 0.0, 1: 0.2, 2: 0.0, 3: 0.1, 4: 0.1, 5: 0.0}
    assert bracket.entrants(1, lambda i, s: scores.get(i) if s == 16 else None, loss) == [1, 3]  # the score first
    some = {0: 0.64, 3: 0.60}  # pilots without a loss (recorded before) rank after those with one, tied
    assert bracket.entrants(1, score, lambda i, s: some.get(i)) == [3, 0]
    assert bracket.entrants(1, score, lambda i, s: {3: 0.6}.get(i)) == [3, 0, 1, 2, 4, 5]  # 0 ties 1, 2, 4, 5
    # the verdict too: of the pilots that reached the last rung with the same score, the lower loss wins
    single = Bracket.of(METHODS["lora"], 6, min_steps=16, eta=3, rungs=1)
    verdict = single.best(score, "mcc", 200, loss)
    assert verdict.winner.number == 3 and verdict.winner.losses == {16: 0.60}
    assert single.best(score, "mcc", 200).winner.number == 0  # without losses: the earlier, as before


def test_a_comparison_planned_before_ties_were_kept_resumes_by_its_own_rule(tmp_path):
    from loralab.comparison.config import CompareConfig
    from loralab.comparison.driver import PLAN, _planned_rules
    from loralab.runs.artifacts import write_json
    from loralab.runs.config import RunConfig

    config = CompareConfig(RunConfig(train="t.csv", valid="v.csv"), (METHODS["lora"],), 60.0)
    assert config.plan()["keep_ties"] is True
    assert _planned_rules(config, tmp_path).keep_ties  # a new folder
    write_json(tmp_path / PLAN, {k: v for k, v in config.plan().items() if k != "keep_ties"})
    resumed = _planned_rules(config, tmp_path)
    assert not resumed.keep_ties and resumed.plan() == {k: v for k, v in config.plan().items() if k != "keep_ties"}
    write_json(tmp_path / PLAN, config.plan())
    assert _planned_rules(config, tmp_path).keep_ties
    # and one planned before validation losses broke ties resumes without that rule
    assert config.plan()["tie_break"] == "validation loss" and config.tie_break
    write_json(tmp_path / PLAN, {k: v for k, v in config.plan().items() if k != "tie_break"})
    resumed = _planned_rules(config, tmp_path)
    assert not resumed.tie_break and resumed.keep_ties and "tie_break" not in resumed.plan()
    # and one planned before each choice's rates were spread resumes with the old order of settings
    assert config.plan()["rates"] == "spread per choice" and config.per_choice
    write_json(tmp_path / PLAN, {k: v for k, v in config.plan().items() if k != "rates"})
    resumed = _planned_rules(config, tmp_path)
    assert not resumed.per_choice and resumed.tie_break and "rates" not in resumed.plan()
    # and one planned before the last rung's pilots trained with two seeds resumes with one
    assert config.plan()["last_rung_seeds"] == 2 and config.pilot_seeds == 2
    write_json(tmp_path / PLAN, {k: v for k, v in config.plan().items() if k != "last_rung_seeds"})
    resumed = _planned_rules(config, tmp_path)
    assert resumed.pilot_seeds == 1 and resumed.per_choice and "last_rung_seeds" not in resumed.plan()
    one = CompareConfig(RunConfig(train="t.csv", valid="v.csv"), (METHODS["lora"],), 60.0, pilot_seeds=1)
    assert "last_rung_seeds" not in one.plan() and _planned_rules(one, tmp_path).plan() == one.plan()
    # and one planned before a rung kept a lower rate resumes without that rule
    assert config.plan()["survivors"] == "a lower rate kept" and config.hedge
    write_json(tmp_path / PLAN, {k: v for k, v in config.plan().items() if k != "survivors"})
    resumed = _planned_rules(config, tmp_path)
    assert not resumed.hedge and resumed.pilot_seeds == 2 and "survivors" not in resumed.plan()


def test_a_rung_whose_survivors_share_one_rate_keeps_a_lower_one():
    """CoLA on all data (`cola-all-seeded`): LoRA's two best 144-step pilots had one rate (3.2e-3, differing
    only in alpha) and both collapsed to the majority class later. A rung whose survivors share one rate
    (within 1.25x) gives its last place to the best entrant at half that rate or less, so the longer rung
    compares two rates; survivors at different rates, even close ones (STS-B full's 3e-4 and 1.7e-4, whose
    second became the pick), keep their places, and a lower rate that diverged is passed over."""
    rates = [3.2e-3, 3.2e-3, 1.3e-3, 5e-4, 2e-4, 1e-4]
    settings = tuple({"lr": r, "lora_alpha": a} for r, a in zip(rates, (16, 32, 16, 16, 16, 16)))
    short = {0: 0.17, 1: 0.14, 2: 0.10, 3: 0.05, 4: 0.02, 5: 0.0}  # at 16 steps the high rate leads
    longer = {0: 0.0, 1: 0.0, 2: 0.27}  # and at 48 it has collapsed

    def bracket(hedge: bool, settings=settings) -> Bracket:
        return Bracket(METHODS["lora"], settings, (16, 48), 3, least=FILLED_LEAST, hedge=hedge)

    def score(i, steps, ran=(0, 1, 2)):
        return short.get(i) if steps == 16 else longer.get(i) if i in ran else None

    assert bracket(False).entrants(1, score) == [0, 1]
    assert bracket(False).best(lambda i, s: score(i, s, (0, 1)), "mcc", 200).winner.number == 0  # collapsed
    assert bracket(True).entrants(1, score) == [0, 2] and bracket(True).hedges(score) == {48: 2}
    assert bracket(True).best(score, "mcc", 200).winner.number == 2
    # survivors already two rates apart keep their places
    apart = {0: 0.17, 2: 0.16, 1: 0.14, 3: 0.05, 4: 0.02, 5: 0.0}
    assert bracket(True).entrants(1, lambda i, s: apart.get(i) if s == 16 else None) == [0, 2]
    assert bracket(True).hedges(lambda i, s: apart.get(i) if s == 16 else None) == {}
    close = tuple({"lr": r, "lora_alpha": 16} for r in (3e-4, 1.7e-4, 5.3e-5, 3e-5, 9.5e-5, 4e-5))
    assert bracket(True, close).entrants(1, score) == [0, 1] and bracket(True, close).hedges(score) == {}
    # a lower rate that diverged (NaN) is passed over for the next lower one; none left: nothing changes
    nan = {**short, 2: math.nan}
    assert bracket(True).entrants(1, lambda i, s: nan.get(i) if s == 16 else None) == [0, 3]
    flat = tuple({"lr": 3e-3, "lora_alpha": a} for a in (8, 16, 32, 64, 4, 2))
    assert bracket(True, flat).entrants(1, score) == [0, 1]


def test_a_setting_that_trains_in_one_seed_only_is_not_picked():
    """STS-B: LoRA's pick from one-seed pilots (lr 1.8e-3, all-linear) scored Pearson 0.819 and 0.826 in two
    final runs and 0.091 in the third. The last rung's pilots now train with two seeds and rank by their
    mean: a setting that learns in one seed only loses to one that learns in both; one that diverges in
    either ranks last. A folder planned with one seed picks as before."""
    from loralab.comparison.config import CompareConfig
    from loralab.comparison.state import Comparison
    from loralab.runs.config import RunConfig

    first = {0: 0.30, 1: 0.50, 2: 0.45, 3: 0.20, 4: 0.40, 5: 0.10}
    last = {(1, None): 0.82, (1, 1): 0.09, (2, None): 0.80, (2, 1): 0.81}  # 1 learns in one seed only
    pilots = {(i, 16, None): {"pearson": v, "mse": 1.0 - v} for i, v in first.items()}
    pilots.update({(i, 48, seed): {"pearson": v, "mse": 1.0 - v} for (i, seed), v in last.items()})

    def verdict(seeds: int, runs: dict) -> tuple[int, float]:
        config = CompareConfig(RunConfig(train="t.csv", valid="v.csv"), (METHODS["lora"],), 60.0, pilot_seeds=seeds)
        bracket = Bracket.of(METHODS["lora"], 6, 16, 3, 2, higher_is_better=True, last_seeds=seeds)
        cmp = Comparison(config, None, None, "pearson", 2000, 1500, {"lora": bracket})
        cmp._valid = lambda method: lambda i, steps, seed=None: runs.get((i, steps, seed))
        score, loss = cmp.scored("lora")
        best = bracket.best(score, "pearson", 200, loss)
        return best.winner.number, best.winner.values[best.steps]

    assert verdict(1, pilots) == (1, 0.82)  # one seed: the fragile setting
    number, mean = verdict(2, pilots)
    assert number == 2 and mean == pytest.approx(0.805)  # two: the one that learned in both
    assert Bracket.of(METHODS["lora"], 6, 16, 3, 2, last_seeds=2).seeds_at(16) == 1  # the first rung: one seed
    assert Bracket.of(METHODS["lora"], 6, 16, 3, 1, last_seeds=2).seeds_at(16) == 1  # a rung alone: one seed
    diverged = {**pilots, (2, 48, 1): {}}  # a seed that diverged (no scores) makes the mean NaN: it ranks last
    assert verdict(2, diverged)[0] == 1
    waiting = {k: v for k, v in pilots.items() if k != (2, 48, 1)}  # a seed not run yet: no score at that rung
    config = CompareConfig(RunConfig(train="t.csv", valid="v.csv"), (METHODS["lora"],), 60.0)
    bracket = Bracket.of(METHODS["lora"], 6, 16, 3, 2, last_seeds=2)
    cmp = Comparison(config, None, None, "pearson", 2000, 1500, {"lora": bracket})
    cmp._valid = lambda method: lambda i, steps, seed=None: waiting.get((i, steps, seed))
    score, loss = cmp.scored("lora")
    assert score(2, 48) is None and score(1, 48) == pytest.approx(0.455) and loss(1, 48) == pytest.approx(0.545)
    assert cmp.records("lora").seeds(2, 48) == [0.80, None] and cmp.records("lora").seeds(2, 16) is None


def test_a_filled_bracket_goes_as_deep_as_its_share_allows_then_as_wide():
    """CoLA on all its data: a final run of 1,362 steps, a pilot of full fine-tuning costing 0.34 s a step and
    1.6 s besides. A given bracket (6 settings, 3 rungs) stops at 144 steps; a filled one goes on towards the
    final length as far as the share allows, keeping two settings to its last rung."""
    steps = ladder(16, 3, 1362)
    assert steps == (16, 48, 144, 432, 1362)  # not 1,296 as well: nearly the final length
    assert ladder(16, 3, 250) == (16, 48, 144, 250) and ladder(16, 3, 2500) == (16, 48, 144, 432, 1296, 2500)
    assert ladder(16, 3, 16) == (16,) and ladder(16, 3, 10) == (10,) and ladder(16, 3, 20) == (16, 20)
    costs = tuple(0.34 * s + 1.6 for s in steps)
    for available in (100.0, 600.0, 1980.0, 5000.0, 1e6):
        size, rungs, seeds = fill(available, costs, eta=3)
        assert seeds == 1
        assert bracket_cost(size, costs[:rungs], 3, FILLED_LEAST) <= available  # it fits
        if rungs < len(costs):
            assert bracket_cost(6, costs[:rungs + 1], 3, FILLED_LEAST) > available  # one rung deeper would not
        assert size == 64 or bracket_cost(size + 1, costs[:rungs], 3, FILLED_LEAST) > available  # nor one more setting
    assert fill(1980.0, costs, 3)[1] == 5  # to the final length, 1,362 steps (a given bracket: 144)
    assert fill(1000.0, costs, 3)[1] == 4  # to 432 steps
    assert fill(1e6, costs, 3) == (64, 5, 1)  # everything
    assert fill(30.0, costs, 3) == (6, 1, 1)  # not even six first pilots: the first rung, cut short by the budget
    for available in (100.0, 600.0, 1980.0, 5000.0, 1e6):  # two seeds at the last rung, where they fit after depth
        size, rungs, seeds = fill(available, costs, 3, last_seeds=2)
        plain, plain_rungs, _ = fill(available, costs, 3)
        assert rungs == plain_rungs and size <= plain  # as deep as one seed goes: a second seed never costs a rung
        seeded = costs[:rungs - 1] + (2 * costs[rungs - 1],)
        assert seeds == (2 if rungs > 1 and bracket_cost(6, seeded, 3, FILLED_LEAST) <= available else 1)
        paid = seeded if seeds == 2 else costs[:rungs]
        assert bracket_cost(size, paid, 3, FILLED_LEAST) <= available
        assert size == 64 or bracket_cost(size + 1, paid, 3, FILLED_LEAST) > available
    assert fill(1980.0, costs, 3, last_seeds=2)[1:] == (5, 1)  # 1,362-step pilots: twice each would not fit
    assert fill(5000.0, costs, 3, last_seeds=2)[1:] == (5, 2)
    assert fill(400.0, costs, 3, last_seeds=2) == (15, 3, 2)  # 144-step pilots twice each fit, in a narrower bracket


def test_a_last_rung_that_trains_final_runs_is_paid_for_by_them():
    """CoLA's numbers again (0.34 s a step, 1.6 s besides; a final run of 1,362 steps, 3 seeds). A last rung of
    1,362 steps trains the final runs of its seeds, so the share keeps less for them: a 2,600 s share that
    keeping 3 trained final runs leaves room for 432-step pilots only reaches the final length, and a 3,100 s
    share that reached it with one seed reaches it with two."""
    costs = tuple(0.34 * s + 1.6 for s in ladder(16, 3, 1362))
    final, scoring = 0.34 * 1362, 5.0

    def room(share: float, reuse: bool = True):
        def seconds(rungs: int, seeds: int) -> float:
            trained = min(3, seeds if rungs > 1 else 1) if rungs == len(costs) and reuse else 0
            return 0.9 * (share - (3 - trained) * final - 3 * scoring)
        return seconds

    assert fill(room(2600.0, reuse=False), costs, 3, last_seeds=2)[1:] == (4, 2)
    assert fill(room(2600.0), costs, 3, last_seeds=2)[1:] == (5, 1)
    assert fill(room(3100.0, reuse=False), costs, 3, last_seeds=2)[1:] == (5, 1)
    size, rungs, seeds = fill(room(3100.0), costs, 3, last_seeds=2)
    assert (rungs, seeds) == (5, 2)  # final runs 0 and 1 come from its pilots
    paid = costs[:4] + (2 * costs[4],)
    space = room(3100.0)(5, 2)
    assert bracket_cost(size, paid, 3, FILLED_LEAST) <= space < bracket_cost(size + 1, paid, 3, FILLED_LEAST)


def test_a_filled_bracket_keeps_two_settings_to_its_last_rung():
    given = Bracket.of(METHODS["lora"], 6, min_steps=16, eta=3, rungs=3)
    filled = Bracket(given.method, given.settings, (16, 48, 144, 432), 3, least=2)
    first = {0: 0.1, 1: 0.5, 2: 0.4, 3: 0.3, 4: 0.2, 5: 0.0}
    second = {1: 0.6, 2: 0.7}
    third = {2: 0.8, 1: 0.75}

    def score(i, steps):
        return {16: first, 48: second, 144: third}.get(steps, {}).get(i)

    assert given.entrants(1, score) == filled.entrants(1, score) == [1, 2]  # floor(6 / 3) = 2 either way
    assert given.entrants(2, score) == [2]  # a given bracket keeps floor(2 / 3) -> 1
    assert filled.entrants(2, score) == [2, 1] and filled.entrants(3, score) == [2, 1]  # a filled one keeps two
    assert bracket_cost(6, (1.0, 3.0, 9.0, 27.0), 3, FILLED_LEAST) == 6 + 2 * 3 + 2 * 9 + 2 * 27


def test_a_comparison_planned_with_a_given_bracket_resumes_with_it(tmp_path):
    from loralab.comparison.config import CompareConfig
    from loralab.comparison.driver import PLAN, _planned_rules
    from loralab.runs.artifacts import write_json
    from loralab.runs.config import RunConfig

    config = CompareConfig(RunConfig(train="t.csv", valid="v.csv"), (METHODS["lora"],), 60.0)
    assert config.fills and config.plan()["bracket_size"] is None and config.plan()["rungs"] is None
    write_json(tmp_path / PLAN, {**config.plan(), "bracket_size": 6, "rungs": 3})  # planned before brackets filled
    resumed = _planned_rules(config, tmp_path)
    assert (resumed.bracket_size, resumed.rungs, resumed.fills) == (6, 3, False)
    asked = CompareConfig(RunConfig(train="t.csv", valid="v.csv"), (METHODS["lora"],), 60.0, rungs=2)
    assert _planned_rules(asked, tmp_path).rungs == 2  # asked for otherwise: the plan check refuses it later
    assert CompareConfig(RunConfig(train="t.csv", valid="v.csv"), (METHODS["lora"],), 60.0, rungs=2).size == 6


def test_no_pilot_trains_longer_than_a_final_run():
    assert Bracket.of(METHODS["lora"], 2, 16, 3, 3, final_steps=25).steps == (16, 25)
    assert Bracket.of(METHODS["lora"], 2, 16, 3, 3, final_steps=1000).steps == (16, 48, 144)
    assert Bracket.of(METHODS["lora"], 2, 16, 3, 3, final_steps=10).steps == (10,)


def test_the_budget_is_split_and_spent_per_method(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    budget = Budget(100.0, ("lora", "vera"), ledger, final_steps=10, seeds=2, valid_share=1.0)
    assert budget.share("lora") == budget.share("vera") == 50.0
    ledger.add("pilots/lora/a/steps-4", "pilot", wall=4.0, cpu=1.0, train_wall=2.0, steps=4, candidate="lora")
    assert budget.step_cost("lora") == 0.5 and budget.step_cost("vera") is None  # 2 s of training over 4 steps
    assert budget.pilot_cost("lora", 8) == 0.5 * 8 + 2.0  # steps, and the 2 s outside them
    assert budget.final_reserve("lora") == 2 * (0.5 * 10 + 2.0)
    assert budget.affords("lora", 6.0) and not budget.affords("lora", 33.0)  # 4 + 33 + 14 > 50
    # Final runs that a last rung's pilots train cost their scoring only: 33 s of such pilots fit.
    assert budget.final_reserve("lora", trained=1) == 0.5 * 10 + 2 * 2.0
    assert budget.final_reserve("lora", trained=5) == 2 * 2.0 and budget.affords("lora", 33.0, trained=2)
    ledger.add("finals/lora/a/seed-0", "final", wall=9.0, cpu=9.0, train_wall=5.0, steps=10, candidate="lora")
    assert budget.final_reserve("lora") == pytest.approx(0.5 * 10 + 4.0)  # one seed left; its overhead measured
    summary = budget.summary()
    assert summary["per_method"]["lora"] == {"share_seconds": 50.0, "pilot_seconds": 4.0, "final_seconds": 9.0,
                                             "spent_seconds": 13.0}
    assert summary["per_method"]["vera"]["spent_seconds"] == 0.0 and not summary["over_budget"]
    # A resumed comparison reads what was spent back, and skips a line a kill cut short.
    with open(tmp_path / "ledger.jsonl", "a") as f:
        f.write('{"folder": "pilots/vera/x/st')
    again = Budget(100.0, ("lora", "vera"), Ledger(tmp_path / "ledger.jsonl"), 10, 2, 1.0)
    assert again.spent("lora") == 13.0 and again.spent("vera") == 0.0


@pytest.mark.parametrize("names, message", [(("lora", "foo"), "unknown method 'foo'"), ((), "at least one method"),
                                            (("lora", "lora"), "named twice")])
def test_bad_methods_are_refused_in_one_line(names, message):
    with pytest.raises(LoralabError, match=message):
        parse_methods(names)


@pytest.mark.parametrize("text, seconds", [("4", 240.0), ("2.5", 150.0), ("30m", 1800.0), ("90s", 90.0)])
def test_budgets_read_as_minutes_or_durations(text, seconds):
    assert parse_minutes(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1", "nan", "soon", "0m"])
def test_a_budget_of_nothing_is_refused(text):
    with pytest.raises(LoralabError, match="budget"):
        parse_minutes(text)


def _budget(over: bool) -> dict:
    return {"budget_seconds": 600.0, "spent_seconds": 900.0 if over else 500.0, "over_budget": over}


def test_the_answer_names_the_cheaper_method_within_noise_and_an_overspent_budget():
    from loralab.comparison.summary import _sentence

    best = {"method": "full", "rank": 1, "mean": 0.56, "sd": 0.01, "train_seconds": 300.0, "verdict": "best"}
    lora = {"method": "lora", "rank": 2, "mean": 0.55, "sd": 0.01, "train_seconds": 100.0, "verdict": "within noise"}
    vera = {"method": "vera", "rank": 3, "mean": 0.40, "sd": 0.01, "train_seconds": 50.0,
            "verdict": "worse beyond noise"}
    text = _sentence([best, lora, vera], "map@3", _budget(False))
    assert text.startswith("lora is worth it within the 10-minute budget: within noise of the best, full")
    assert "33% of its training time" in text and "overspent" not in text
    alone = _sentence([best, dict(vera, verdict="worse beyond noise")], "map@3", _budget(True))
    assert alone.startswith("full is worth it within the 10-minute budget (overspent: 900 s")
    assert "beyond noise of every other method" in alone
    assert _sentence([dict(vera, rank=None)], "map@3", _budget(False)).startswith("No method finished")
    # STS-B: LoRA "within noise" of full only because one of its seeds never learned: not named
    full = {"method": "full", "rank": 1, "mean": 0.833, "sd": 0.008, "n": 3, "train_seconds": 142.0, "verdict": "best"}
    lora = {"method": "lora", "rank": 2, "mean": 0.578, "sd": 0.422, "n": 3, "train_seconds": 92.0,
            "verdict": "within noise"}
    text = _sentence([full, lora], "pearson", _budget(False))
    assert text.startswith("full is worth it") and "lora was within noise of it only because its seeds disagree" in text
    steady = dict(lora, mean=0.826, sd=0.02)  # a spread the best's could have shown by chance (F test, 95%)
    assert _sentence([full, steady], "pearson", _budget(False)).startswith("lora is worth it")


def test_a_best_rate_at_the_end_of_its_range_is_flagged():
    """Four GLUE comparisons picked an end of LoRA's range: such a best is the range's, not the method's."""
    from loralab.comparison.summary import rate_at_edge
    from loralab.recommendation.verdict import Pilot

    def pilots(*rates):
        return [Pilot(i, "lora", "lora", {"lr": r}, {16: 0.5}, "pruned", None) for i, r in enumerate(rates)]

    tried = pilots(3e-4, 1e-3, 3e-3, 5e-4)
    assert rate_at_edge(tried, {"lr": 3e-3}) == "highest" and rate_at_edge(tried, {"lr": 3e-4}) == "lowest"
    assert rate_at_edge(tried, {"lr": 1e-3}) is None
    assert rate_at_edge(pilots(3e-4, 3e-3), {"lr": 3e-3}) is None  # two rates: every pick is an end
    assert rate_at_edge(tried, {}) is None


def test_a_rung_is_trimmed_so_that_the_last_rung_still_fits(tmp_path):
    """Science-exam's full fine-tuning: rungs of 16/48/144/250 steps (the final run's length; its pilot trains
    one of the three final runs), a 3,600 s share, 550 s spent on eleven 16-step pilots, and the pilots now
    measured at 2 s a step and 17 s besides. Three 48-step pilots, then two of 144 and two of 250, and the
    final runs would not fit (the 250-step rung missed by 13 s); two 48-step pilots leave room for it. The
    trim is kept in brackets.json, and the rung runs the best two."""
    import dataclasses
    import json

    from loralab.comparison.config import CompareConfig
    from loralab.comparison.driver import SHAPES, _rung
    from loralab.comparison.state import Comparison
    from loralab.runs.config import RunConfig

    bracket = Bracket(METHODS["full"], tuple(METHODS["full"].settings(11)), (16, 48, 144, 250), 3, least=2)
    cost = lambda steps: 2.0 * steps + 17.0  # noqa: E731
    assert bracket.rest_cost(1, 3, cost) == 3 * 113 + 2 * 305 + 2 * 517
    fits = lambda c: 550 + c + 1129 <= 3600  # noqa: E731  (what was spent, then the reserve for two trained finals)
    assert bracket.trim(1, 3, cost, fits) == 2
    assert bracket.trim(1, 2, cost, fits) is None  # two fit: nothing to trim
    assert bracket.trim(1, 3, cost, lambda c: False) is None  # not even two: the budget check stops the bracket
    assert bracket.trim(1, 3, cost, lambda c: True) is None
    seeded = dataclasses.replace(bracket, last_seeds=2)
    assert seeded.rest_cost(1, 3, cost) == 3 * 113 + 2 * 305 + 2 * 2 * 517

    first = {i: 0.30 + 0.01 * i for i in range(11)}  # settings 10, 9, 8 best at 16 steps
    runs = {(i, 16, None): {"map@3": v} for i, v in first.items()}
    capped = dataclasses.replace(bracket, caps=((1, 2),))
    score = lambda i, steps: first[i] if steps == 16 else None  # noqa: E731
    assert bracket.entrants(1, score) == [10, 9, 8] and capped.entrants(1, score) == [10, 9]

    base = RunConfig(train="t.csv", valid="v.csv")
    config = CompareConfig(base, (METHODS["full"],), 3600.0, seeds=3)
    ledger = Ledger(tmp_path / "ledger.jsonl", "cpu")
    for i in range(11):
        ledger.add(f"pilots/full/{i:02d}/steps-16", "pilot", wall=50.0, cpu=50.0, train_wall=33.0, steps=16,
                   candidate="full", step_wall=2.0)
    budget = Budget(3600.0, ("full",), ledger, final_steps=250, seeds=3, valid_share=2.5)
    (tmp_path / SHAPES).write_text(json.dumps({"full": {"settings": 11, "rung_steps": [16, 48, 144, 250]}}))
    cmp = Comparison(config, tmp_path, budget, "map@3", 2000, 500, {"full": bracket}, log=lambda _: None)
    cmp._valid = lambda method: lambda i, steps, seed=None: runs.get((i, steps, seed))
    planned = _rung(cmp, 1)
    assert [folder.split("/")[2][:2] for folder, *_ in planned] == ["10", "09"]
    assert json.loads((tmp_path / SHAPES).read_text())["full"]["caps"] == {"1": 2}
    assert cmp.brackets["full"].caps == ((1, 2),) and "full" not in cmp.stopped
