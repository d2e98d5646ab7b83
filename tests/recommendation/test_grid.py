"""A finite search space (`--lr-points`, `--lora-ranks`, ...) and `recommend --grid`, which trains all of it:
the exhaustive reference a search's pick is judged against."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest

from recommend_fixtures import easy_search
from run_fixtures import save_tiny_bert
from loralab.cli import main
from loralab.errors import LoralabError
from loralab.recommendation import Candidate, candidates, recommend
from loralab.recommendation.grid import GRID, run_grid
from loralab.runs.artifacts import RECORD
from loralab.strategies import Strategy

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_tokenizer) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("model") / "tiny", minilm_tokenizer)


def test_lr_points_make_a_finite_space_whose_grid_is_every_setting():
    lora, = candidates(("m",), ("lora",), lr_points=3, lora_ranks=(8,), lora_alphas=(16.0, 32.0))
    assert lora.lr_values() == (1e-4, 1e-3, 1e-2)  # log-spaced, two significant figures
    assert lora.space_size() == 3 * 1 * 2 * 2
    grid = lora.grid()
    assert len(grid) == 12 and len({json.dumps(g, sort_keys=True) for g in grid}) == 12
    assert grid[0] == {"lr": 1e-4, "lora_targets": "qv", "lora_r": 8, "lora_alpha": 16.0}
    full = Candidate("m", Strategy.FULL, (3e-5, 2e-4), lr_points=4)
    assert full.lr_values() == (3e-5, 5.6e-5, 1.1e-4, 2e-4)
    assert full.space_size() == 4 and [g["lr"] for g in full.grid()] == list(full.lr_values())
    # Every draw of the search comes from the grid, so the grid holds whatever the search can pick.
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(20):
        assert lora.suggest(study.ask()) in grid
    # The default space is continuous in the rate: no grid. Its other choices are the method's own, as
    # `compare` brackets them (loralab.settings.methods).
    continuous, = candidates(("m",), ("lora",))
    assert continuous.space_size() is None
    assert continuous.space() == {"lora_targets": ("qv", "all-linear"), "lora_r": (8, 16), "lora_alpha": (16, 32)}
    with pytest.raises(LoralabError, match="--lr-points"):
        continuous.grid()


@pytest.mark.parametrize("space, option", [({"lora_ranks": (0,)}, "--lora-ranks"),
                                           ({"lora_alphas": ()}, "--lora-alphas"),
                                           ({"lora_targets": ("qkv",)}, "--lora-target-sets"),
                                           ({"lr_points": 0}, "--lr-points")])
def test_a_bad_space_is_refused_naming_its_option(space, option):
    with pytest.raises(LoralabError, match=option):
        candidates(("m",), ("lora",), **space)


def _grid_config(tmp_path, tiny, **settings):
    config = easy_search(tmp_path, tiny, **settings)
    space = dict(lr_points=2, lora_ranks=(4,), lora_alphas=(8.0,), lora_targets=("qv",))
    ranges = {Strategy.FULL: (1e-3, 1e-3), Strategy.LORA: (1e-9, 1e-3)}
    return dataclasses.replace(config, grid=True, candidates=candidates((str(tiny),), ("full", "lora"), ranges, **space),
                               base=dataclasses.replace(config.base, train_limit=16))


def test_the_grid_trains_every_setting_on_all_the_data_and_ranks_them(tmp_path, tiny):
    config = _grid_config(tmp_path, tiny)
    result = run_grid(config, tmp_path / "grid", log=lambda _: None)
    rows = result["rows"]
    assert [r["candidate"] for r in rows].count("tiny-lora") == 2 and len(rows) == 3
    assert {r["settings"]["lr"] for r in rows if r["candidate"] == "tiny-lora"} == {1e-9, 1e-3}
    assert all(r["status"] == "completed" and r["steps"] == 4 for r in rows)  # 16 examples, batches of 4
    scores = [r["map@3"] for r in rows]
    assert scores == sorted(scores, reverse=True) and result["best"] == rows[0]
    assert result["spent_seconds"]["grid"] == pytest.approx(sum(r["seconds"] for r in rows), abs=0.5)
    folders = sorted(p.parent.relative_to(tmp_path / "grid").as_posix() for p in (tmp_path / "grid").glob(f"grid/*/*/{RECORD}"))
    assert folders == ["grid/tiny-full/lr-0.001", "grid/tiny-lora/lr-0.001_qv_r-4_alpha-8",
                       "grid/tiny-lora/lr-1e-09_qv_r-4_alpha-8"]
    assert (tmp_path / "grid" / GRID).is_file() and "| 1 | tiny-" in (tmp_path / "grid" / "grid.md").read_text()

    # A rerun reads every finished run back instead of training it again.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "grid").glob(f"grid/*/*/{RECORD}")}
    again = run_grid(config, tmp_path / "grid", log=lambda _: None)
    assert [r["folder"] for r in again["rows"]] == [r["folder"] for r in rows]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # A search in the grid's folder is refused: its ledger would mix the two.
    with pytest.raises(LoralabError, match="other settings"):
        recommend(dataclasses.replace(config, grid=False), tmp_path / "grid", log=lambda _: None)


def test_cli_grid_needs_a_finite_space_and_says_so_in_one_line(tmp_path, tiny, capsys):
    config = easy_search(tmp_path, tiny)
    common = ["recommend", "--train", config.base.train, "--valid", config.base.valid, "--models", str(tiny),
              "--budget", "1h", "--device", "cpu", "--quiet", "--batch-size", "4", "--max-length", "16"]
    assert main(common + ["--out", str(tmp_path / "a"), "--grid", "--strategies", "lora"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--lr-points" in err
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    assert main(common + ["--out", str(tmp_path / "b"), "--lr-points", "2", "--lora-ranks", "eight"]) == 2
    assert "--lora-ranks" in capsys.readouterr().err

    assert main(common + ["--out", str(tmp_path / "c"), "--grid", "--strategies", "full", "--lr-points", "2",
                          "--train-limit", "16"]) == 0
    out = capsys.readouterr().out
    assert "grid:" in out and "2 settings" in out and "best: tiny-full" in out
    assert len(json.loads((tmp_path / "c" / GRID).read_text())["rows"]) == 2
