"""Per-method brackets, the budget's use and the final run's length, on a fake trainer and a fake clock.

The runner stands in for training: a run "takes" 2 s plus a fixed time per step on a clock only it
advances, and scores by a rule the test chooses, so what the search spends and picks is exact.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import optuna
import pytest

from recommend_fixtures import easy_search
from run_fixtures import save_tiny_bert
from loralab.recommendation import candidates, recommend
from loralab.recommendation.driver import budget_line
from loralab.recommendation.space import DEFAULT_STRATEGIES
from loralab.settings.methods import METHODS, TARGET_SETS
from loralab.strategies import Strategy

optuna.logging.set_verbosity(optuna.logging.WARNING)
SECONDS_PER_STEP = {"full": 1.0, "lora": 0.5}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_tokenizer) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("model") / "tiny", minilm_tokenizer)


class FakeTrainer:
    """Trains nothing: each run costs 2 s + its steps' time on this clock; full scores 0.6 from the
    start, LoRA 0.3 until it has 8 steps, then 0.9 (a slow starter); a higher rate scores a little more."""

    def __init__(self, seconds_per_step: dict[str, float] | None = None):
        self.per_step = seconds_per_step or SECONDS_PER_STEP
        self.seconds = 0.0
        self.runs: list[tuple[str, int]] = []

    def now(self) -> tuple[float, float]:
        return self.seconds, self.seconds

    def __call__(self, config, folder: Path) -> dict:
        t = config.training
        steps = t.max_steps or math.ceil(math.ceil(config.train_limit / t.batch_size) * t.epochs)
        family = config.strategy.strategy.value
        per_step = self.per_step[family]
        self.seconds += 2.0 + per_step * steps
        self.runs.append((family, steps))
        score = (0.6 if family == "full" else 0.3 if steps < 8 else 0.9) + 0.01 * math.log10(t.lr)
        return {"status": "completed", "valid": {"map@3": score}, "peak_memory_mb": 10.0, "steps": steps,
                "train_seconds": per_step * steps, "median_step_seconds": per_step}


def _search(tmp_path, tiny, per_step=None, train_limit=16, **settings):
    config = easy_search(tmp_path, tiny, **{"bracket_size": 4, **settings})
    ranges = {Strategy.FULL: (1e-4, 1e-3), Strategy.LORA: (1e-4, 1e-3)}
    config = dataclasses.replace(config, candidates=candidates((str(tiny),), ("full", "lora"), ranges),
                                 base=dataclasses.replace(config.base, train_limit=train_limit))
    fake = FakeTrainer(per_step)
    return recommend(config, tmp_path / "search", log=lambda _: None, runner=fake, now=fake.now), fake


def test_a_slow_starter_survives_its_own_bracket_and_wins(tmp_path, tiny):
    result, _ = _search(tmp_path, tiny)
    lora = [p for p in result["pilots"] if p["strategy"] == "lora"]
    # In one bracket with full, every LoRA setting (0.3 < 0.6 at 4 steps) would be pruned at the first rung.
    assert len(lora) == 4 and sum("8" in p["values"] for p in lora) == 2
    assert result["winner"]["candidate"] == "tiny-lora"
    brackets = {p["candidate"]: len(p["values"]) for p in result["pilots"]}
    assert set(brackets) == {"tiny-full", "tiny-lora"}


def test_the_final_run_is_never_shorter_than_the_winning_pilot(tmp_path, tiny):
    result, fake = _search(tmp_path, tiny)
    # 16 examples in batches of 4 are 4 steps an epoch; the winner's pilot trained 8
    assert result["final_steps"] == 4 and result["final"]["pilot_steps"] == 8
    assert result["final"]["steps"] == 8 and fake.runs[-1] == ("lora", 8)
    report = (tmp_path / "search" / "report.md").read_text()
    assert "(8 steps; its longest pilot trained 8)" in report


def test_the_budget_is_used_and_counted_as_spent(tmp_path, tiny):
    result, fake = _search(tmp_path, tiny, budget_seconds=300.0, brackets=None)
    spent = result["spent_seconds"]
    assert spent["total"] == pytest.approx(fake.seconds, abs=0.1)  # every run's whole time, nothing else
    assert spent["total"] <= 300.0 and spent["total"] >= 0.9 * 300.0, (spent, result["stopped"])
    assert result["stopped"].startswith("budget")
    split = result["split"]
    assert split["share"] > 0 and split["final_reserve"] > 0 and split["candidates"] == ["tiny-full", "tiny-lora"]
    assert all(f["shares"] and f["spent"] > 0 for f in result["families"])
    report = (tmp_path / "search" / "report.md").read_text()
    assert "| `tiny-lora` |" in report and "kept for the final run" in report


def test_what_a_costly_loser_s_final_run_held_back_is_spent_once_a_cheap_one_leads(tmp_path, tiny):
    """Full's final run (10 s a step, 16 steps) is kept in reserve until LoRA (0.5 s a step) leads; then
    only LoRA's final run need fit, and the difference goes to more pilots."""
    result, fake = _search(tmp_path, tiny, per_step={"full": 10.0, "lora": 0.5}, train_limit=64,
                           budget_seconds=600.0, brackets=None)
    assert result["split"]["final_reserve"] > 160 and result["winner"]["candidate"] == "tiny-lora"
    assert 0.9 * 600 <= result["spent_seconds"]["total"] <= 600, result["stopped"]
    assert result["final"]["steps"] == 16 and fake.runs[-1] == ("lora", 16)


def test_a_search_that_stops_early_says_why(tmp_path, tiny):
    result, _ = _search(tmp_path, tiny, budget_seconds=300.0, brackets=1)
    assert result["spent_seconds"]["total"] < 0.9 * 300.0
    line = budget_line(result)
    assert "stopped early: 1 bracket(s) done" in line
    assert "stopped early" in (tmp_path / "search" / "report.md").read_text()


def test_the_space_holds_lora_targets_and_the_new_methods(tiny):
    assert {"lora", "dora", "lora+", "pissa", "vera", "ia3"} <= set(DEFAULT_STRATEGIES)
    assert {"olora", "galore", "full"} <= set(METHODS)
    measured = {"lora": 1e-3, "dora": 3e-3, "lora+": 3e-4, "pissa": 1e-3, "olora": 1e-3, "vera": 3e-2,
                "ia3": 3e-2, "galore": 3e-4, "full": 1e-4}
    for name, lr in measured.items():
        low, high = METHODS[name].lr_range
        assert low <= lr <= high, name
    found = candidates((str(tiny),), tuple(measured))
    assert [c.name for c in found] == [f"tiny-{m}" for m in measured]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {c.name: c.suggest(study.ask()) for c in found}
    assert drawn["tiny-dora"]["lora_targets"] in TARGET_SETS and set(drawn["tiny-vera"]) == {"lr", "vera_targets"}
    assert set(drawn["tiny-ia3"]) == {"lr"} and drawn["tiny-lora+"]["lora_plus_ratio"] in (16.0, 4.0)
    base = easy_search(tiny.parent, tiny).base
    lora = {c.family: c.config(base, {**drawn[c.name], "lora_targets": "all-linear"}).strategy for c in found
            if c.lora_like}
    assert lora["lora"].lora.targets == ("all-linear",) and lora["dora"].lora.use_dora
    assert lora["lora+"].lora.plus_ratio in (16.0, 4.0) and lora["pissa"].lora.init == "pissa"
    assert lora["olora"].lora.init == "olora"
    strategies = {c.family: c.config(base, drawn[c.name]).strategy.strategy for c in found}
    assert strategies["vera"] is Strategy.VERA and strategies["ia3"] is Strategy.IA3
    assert strategies["galore"] is Strategy.GALORE
    vera = next(c for c in found if c.family == "vera").config(base, {"lr": 3e-2, "vera_targets": "all-linear"})
    assert vera.strategy.vera.targets == ("all-linear",)


def test_recommend_and_compare_search_each_method_in_the_same_range_and_choices(tiny):
    from loralab.comparison import METHODS as COMPARED

    found = {c.family: c for c in candidates((str(tiny),), tuple(COMPARED))}
    assert set(found) == set(COMPARED)
    for name, judged in COMPARED.items():
        assert found[name].lr_range == judged.lr_range, name
        assert {k: tuple(TARGET_SETS.get(v, v) if isinstance(v, str) and k.endswith("_targets") else v for v in values)
                for k, values in found[name].space().items()} == judged.choices, name
    assert candidates((str(tiny),), ("lora-plus",))[0].family == "lora+"  # the older name still works


def test_a_budget_too_small_to_share_still_runs_what_it_can(tmp_path, tiny):
    """Equal shares (about 6 s) hold no first-rung pilot (6 to 8 s); what is left still holds one."""
    result, fake = _search(tmp_path, tiny, train_limit=64, budget_seconds=40.0, brackets=None)
    assert result["split"]["share"] < 6
    assert sum(len(p["values"]) for p in result["pilots"]) >= 1 and result["final"]["status"] == "completed"
    assert result["spent_seconds"]["total"] <= 40.0
    assert result["stopped"].startswith("budget")
