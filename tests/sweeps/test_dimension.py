"""Intrinsic dimension with real runs: baseline and subspace runs, records, resume and the CLI."""

import json

import pytest

from loralab.cli import main
from loralab.runs.config import RunConfig
from loralab.sweeps.dimension import DimensionConfig, measure
from loralab.errors import LoralabError
from loralab.sweeps.intrinsic import SearchConfig
from loralab.training import TrainConfig
from run_fixtures import save_tiny_bert


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, minilm_tokenizer, science_exam):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_tokenizer)


def tiny_config(base_folder, science_exam, **overrides):
    training = TrainConfig(batch_size=2, max_steps=2, max_length=32, warmup_ratio=0.0, seed=0)
    base = RunConfig(train=str(science_exam / "train.csv"), valid=str(science_exam / "valid.csv"),
                     model=str(base_folder), training=training, train_limit=4, valid_limit=8, device="cpu")
    settings = dict(baseline_lr=0.05, theta_lr=0.5, projection="fastfood",
                    search=SearchConfig(d_min=10, d_max=100, per_decade=1, resolution=10))
    return DimensionConfig(base=base, **{**settings, **overrides})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:the task head")
def test_measure_trains_baseline_and_subspaces_then_resumes_without_training(tmp_path, base_folder, science_exam):
    config = tiny_config(base_folder, science_exam)
    result, files = measure(config, tmp_path, progress=False, log=lambda _: None)
    baseline = json.loads((tmp_path / "baseline" / "run.json").read_text())
    assert baseline["strategy"] == "full" and baseline["config"]["training"]["lr"] == 0.05
    assert result.baseline == baseline["valid"]["accuracy"]
    scored = dict(result.points)
    assert 10 in scored
    for d, value in scored.items():
        record = json.loads((tmp_path / f"d-{d}" / "run.json").read_text())
        assert record["strategy"] == "subspace" and record["config"]["strategy"]["subspace"]["dim"] == d
        assert record["trainable_params"] == d  # the head moves through the subspace too
        assert record["valid"]["accuracy"] == value
    saved = json.loads(files["json"].read_text())
    assert saved["baseline"] == result.baseline and saved["details"]["projection"] == "fastfood"
    assert files["png"].stat().st_size > 0

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    again, _ = measure(config, tmp_path, run_fn=must_not_train, progress=False, log=lambda _: None)
    assert again.points == result.points and again.d_int == result.d_int


@pytest.mark.filterwarnings("ignore:the task head")
def test_train_head_trains_the_head_beside_theta(tmp_path, base_folder, science_exam):
    config = tiny_config(base_folder, science_exam, train_head=True)
    record = json.loads(json.dumps(config.at(10).to_dict()))
    assert record["strategy"]["train_head"] is True and config.at(10).strategy.subspace.dim == 10
    assert tiny_config(base_folder, science_exam).at(10).strategy.train_head is False


def test_lr_reference_dim_scales_only_thetas_learning_rate(base_folder, science_exam):
    from conftest import tiny_model
    from loralab.runs.one_run import learning_rates
    from loralab.strategies import apply_strategy
    from loralab.training.optimizer import adamw

    config = tiny_config(base_folder, science_exam, lr_reference_dim=1000, train_head=True)
    training = config.at(4000).training
    assert training.lr == 0.5 and training.theta_lr == pytest.approx(0.5 * (1000 / 4000) ** 0.5)
    assert tiny_config(base_folder, science_exam).at(4000).training.theta_lr is None
    split = tiny_config(base_folder, science_exam, head_lr=1e-3).at(4000).training
    assert split.lr == 1e-3 and split.theta_lr == 0.5
    model = tiny_model("bert")
    report = apply_strategy(model, config.at(40).strategy)
    training = config.at(40).training
    groups = adamw(model, training.lr, training.weight_decay, learning_rates(report.groups, training)).param_groups
    theta = [g for g in groups if any(p.dim() == 1 and p.numel() == 40 for p in g["params"])]
    assert len(theta) == 1 and theta[0]["lr"] == pytest.approx(0.5 * 5.0) and len(theta[0]["params"]) == 1
    assert all(g["lr"] == 0.5 for g in groups if g is not theta[0])


@pytest.mark.slow
def test_search_follows_the_scores_of_the_runs(tmp_path, base_folder, science_exam):
    """Scores faked as d / 400 cross 90% of the baseline (1.0) at d = 360: the coarse grid brackets it,
    bisection on multiples of 50 then lands on 400, with 350 the last miss."""
    config = tiny_config(base_folder, science_exam, search=SearchConfig(d_min=100, d_max=1000, per_decade=2,
                                                                         resolution=50))
    asked = []

    def fake_run(run_config, folder, **kwargs):
        d = run_config.strategy.subspace.dim if run_config.strategy.strategy.value == "subspace" else None
        asked.append(d)
        return {"status": "completed", "trainable_params": d or 1, "train_seconds": 0.0,
                "valid": {"accuracy": 1.0 if d is None else min(1.0, d / 400)}}

    result, _ = measure(config, tmp_path, run_fn=fake_run, progress=False, log=lambda _: None)
    assert asked[0] is None  # the baseline first
    assert asked[1:4] == [100, 316, 1000]
    assert result.d_int == 400 and result.lower == 350


def test_missing_validation_is_refused(base_folder, science_exam):
    with pytest.raises(LoralabError, match="validation data"):
        DimensionConfig(base=RunConfig(train=str(science_exam / "train.csv")))


@pytest.mark.slow
def test_cli_reports_d_int(tmp_path, base_folder, science_exam, capsys):
    code = main(["intrinsic-dim", "--train", str(science_exam / "train.csv"), "--valid", str(science_exam / "valid.csv"),
                 "--model", str(base_folder), "--train-limit", "4", "--valid-limit", "8", "--batch-size", "2",
                 "--max-length", "32", "--max-steps", "1", "--d-min", "10", "--d-max", "20", "--per-decade", "1",
                 "--resolution", "10", "--projection", "sparse", "--threads", "1", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "d_int90" in out
    assert (tmp_path / "intrinsic.md").is_file() and (tmp_path / "report.md").is_file()
    record = json.loads((tmp_path / "intrinsic.json").read_text())
    assert record["details"]["projection"] == "sparse"
    page = (tmp_path / "report.html").read_text()  # the interactive page plots the metric against d, too
    figures = json.loads(page.split('id="report-data">')[1].split("</script>")[0])["figures"]
    assert figures["intrinsic"]["data"][0]["x"] == [p["d"] for p in record["points"]]


def test_cli_rejects_a_bad_metric_value(tmp_path, science_exam, capsys):
    code = main(["intrinsic-dim", "--train", str(tmp_path / "missing.csv"), "--valid", str(science_exam / "valid.csv"),
                 "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert "missing.csv" in capsys.readouterr().err
