"""Experiment files and sweeps: expansion, folder names, resume after a kill, damaged records, divergence."""

import json
import textwrap
from pathlib import Path

import pytest

from conftest import SCIENCE
from loralab.runs.artifacts import RECORD, WEIGHTS, save_weights, write_json
from loralab.cli import main
from loralab.errors import LoralabError
from loralab.runs import data_identity
from loralab.runs.state import record_state
from loralab.sweeps.experiment import MANIFEST, load_experiment, packaged_experiment
from loralab.sweeps.sweep import sweep


def write(folder: Path, text: str, name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def experiment_file(folder: Path) -> Path:
    """Three runs: full, and LoRA at two alphas; data paths relative to the file's folder."""
    (folder / "data").mkdir(exist_ok=True)
    for name in ("train.csv", "valid.csv"):
        (folder / "data" / name).write_text("id,prompt,A,B,answer\n1,q,x,y,A\n")
    return write(folder, """
        name: tiny
        base:
          train: data/train.csv
          valid: data/valid.csv
          training.lr: 1e-4          # YAML reads this as a string; it must become a float
          training: {max_steps: 2}
        runs:
          - {name: full, strategy: full}
          - name: lora
            strategy: lora
            grid: {lora_alpha: [8, 512]}
        """)


class FakeRun:
    """Stands in for loralab.runs.run: writes a complete record (and weights) without a model."""

    def __init__(self, fail_on_call: int | None = None, diverge: set[str] = frozenset()):
        self.calls: list[str] = []
        self.fail_on_call = fail_on_call
        self.diverge = diverge

    def __call__(self, config, out, *, progress=True, log=print):
        out = Path(out)
        self.calls.append(out.name)
        record = {"status": "running", "config": config.to_dict(), "hyperparameters": config.flat(),
                  "strategy": config.strategy.strategy.value, "data": data_identity(config)}
        write_json(out / RECORD, record)
        if self.fail_on_call == len(self.calls):
            raise KeyboardInterrupt  # the process dies mid-run: the record stays "running"
        record.update(trainable_params=10, total_params=100, train_seconds=1.0, peak_memory_mb=5.0, loss=[1.0, 0.9],
                      steps=2)
        if out.name in self.diverge:
            record.update(status="diverged", diverged_at_step=2)
        else:
            import torch

            record.update(status="completed", weights=WEIGHTS,
                          weights_sha256=save_weights(out / WEIGHTS, {"w": torch.ones(2)}),
                          valid={"map@3": 0.5, "accuracy": 0.3, "questions": 1})
        write_json(out / RECORD, record)
        return record


def test_expansion_aliases_paths_and_folder_names(tmp_path):
    experiment = load_experiment(experiment_file(tmp_path))
    assert experiment.name == "tiny"
    assert [p.folder for p in experiment.runs] == ["full_seed-0", "lora_alpha-8_seed-0", "lora_alpha-512_seed-0"]
    full, low, high = (p.config for p in experiment.runs)
    assert full.training.lr == 1e-4 and isinstance(full.training.lr, float) and full.training.max_steps == 2
    assert (low.strategy.lora.alpha, high.strategy.lora.alpha) == (8.0, 512.0)
    assert Path(full.train) == (tmp_path / "data" / "train.csv").resolve()  # relative to the file, not the cwd
    assert load_experiment(tmp_path / "exp.yaml").runs == experiment.runs  # names are stable


def test_seeds_repeat_and_overlapping_entries_run_once(tmp_path):
    experiment_file(tmp_path)
    path = write(tmp_path, """
        base: {train: data/train.csv}
        runs:
          - {name: lora, strategy: lora, seeds: [0, 1, 2]}
          - {name: sweep, strategy: lora, grid: {strategy.lora.alpha: [32, 64]}}
        """, "seeds.yaml")
    runs = load_experiment(path).runs
    assert [p.folder for p in runs] == ["lora_seed-0", "lora_seed-1", "lora_seed-2", "lora_alpha-64_seed-0"]
    assert runs[0].labels == ("lora", "sweep")  # alpha 32 is the base's alpha: the same run as lora seed 0
    assert [p.config.training.seed for p in runs[:3]] == [0, 1, 2]


def test_toml_files_read_like_yaml(tmp_path):
    experiment_file(tmp_path)
    path = write(tmp_path, """
        [base]
        train = "data/train.csv"
        lr = 3e-4
        [[runs]]
        name = "qv"
        strategy = "qv"
        """, "exp.toml")
    (planned,) = load_experiment(path).runs
    assert planned.folder == "qv_seed-0" and planned.config.training.lr == 3e-4


@pytest.mark.parametrize("body, message", [
    ("base: {train: t.csv, lora_alpah: 8}", "unknown setting 'lora_alpah'"),
    ("base: {train: t.csv}\nruns: [{grid: {training.lrr: [1]}}]", "unknown setting 'training.lrr'"),
    ("base: {train: t.csv, lr: fast}", "invalid value 'fast' for training.lr"),
    ("base: {train: t.csv}\nruns: [{strategy: dora}]", "unknown strategy 'dora'"),
    ("base: {train: t.csv}\nruns: [{grid: {lr: 0.1}}]", "must be a non-empty list"),
    ("base: {lr: 0.1}", "no training file: set train in base or in this entry"),
    ("bases: {}", "unknown top-level key 'bases'"),
    ("base: {train: t.csv, lora_alpha: .inf}", r"invalid strategy.lora.alpha=inf: expected a finite number > 0"),
    ("base: {train: t.csv}\nruns: [{lora_targets: 5}]", r"invalid value 5 for strategy.lora.targets \(expected a list"),
    ("base: {train: t.csv, lr: -1}", r"invalid training.lr=-1.0"),
    ("base: {train: t.csv, epochs: .nan}", r"invalid training.epochs=nan"),
    ("base: {train: 5}", r"invalid value 5 for train \(expected a path"),
])
def test_bad_experiment_files_name_file_and_key(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(LoralabError, match=message) as info:
        load_experiment(path)
    assert str(path) in str(info.value)


def test_sweep_interrupted_after_first_run_resumes_without_redoing_it(tmp_path):
    experiment = load_experiment(experiment_file(tmp_path))
    out = tmp_path / "out"
    first = FakeRun(fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        sweep(experiment, out, run_fn=first, progress=False, log=lambda _: None)
    assert json.loads((out / "lora_alpha-8_seed-0" / RECORD).read_text())["status"] == "running"

    second = FakeRun()
    result = sweep(experiment, out, run_fn=second, progress=False, log=lambda _: None)
    assert second.calls == ["lora_alpha-8_seed-0", "lora_alpha-512_seed-0"]  # the finished run is kept
    assert result.skipped == ["full_seed-0"]
    assert all(record_state(out / p.folder, p.config)[0] == "done" for p in experiment.runs)

    third = FakeRun()
    sweep(experiment, out, run_fn=third, progress=False, log=lambda _: None)
    assert third.calls == []  # rerunning a finished sweep does nothing
    manifest = json.loads((out / MANIFEST).read_text())
    assert [r["folder"] for r in manifest["runs"]] == [p.folder for p in experiment.runs]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "drop_loss", "weights"])
def test_damaged_record_is_detected_and_redone(tmp_path, damage):
    experiment = load_experiment(experiment_file(tmp_path))
    out = tmp_path / "out"
    sweep(experiment, out, run_fn=FakeRun(), progress=False, log=lambda _: None)
    folder = out / "full_seed-0"
    text = (folder / RECORD).read_text()
    if damage == "truncate":
        (folder / RECORD).write_text(text[: len(text) // 2])
    elif damage == "garbage":
        (folder / RECORD).write_bytes(b"\x00\xff" * 10)
    elif damage == "drop_loss":
        record = json.loads(text)
        del record["loss"]
        (folder / RECORD).write_text(json.dumps(record))
    else:
        (folder / WEIGHTS).write_bytes(b"not the weights")
    state, why = record_state(folder, experiment.runs[0].config)
    assert state == "redo", why
    again = FakeRun()
    sweep(experiment, out, run_fn=again, progress=False, log=lambda _: None)
    assert again.calls == ["full_seed-0"]
    assert json.loads((folder / RECORD).read_text())["status"] == "completed"


def test_record_without_its_weights_file_stands(tmp_path):
    """Results are committed without weights; a completed record whose weights were removed is kept."""
    experiment = load_experiment(experiment_file(tmp_path))
    out = tmp_path / "out"
    sweep(experiment, out, run_fn=FakeRun(), progress=False, log=lambda _: None)
    (out / "full_seed-0" / WEIGHTS).unlink()
    assert record_state(out / "full_seed-0", experiment.runs[0].config)[0] == "done"


def test_folder_with_a_different_configuration_is_refused(tmp_path):
    experiment = load_experiment(experiment_file(tmp_path))
    out = tmp_path / "out"
    sweep(experiment, out, run_fn=FakeRun(), progress=False, log=lambda _: None)
    text = (tmp_path / "exp.yaml").read_text().replace("1e-4", "2e-4")  # same folder names, other runs
    (tmp_path / "exp.yaml").write_text(text)
    changed = load_experiment(tmp_path / "exp.yaml")
    runner = FakeRun()
    with pytest.raises(LoralabError, match="different configuration"):
        sweep(changed, out, run_fn=runner, progress=False, log=lambda _: None)
    assert runner.calls == []  # refused before anything ran


def test_moved_data_with_the_same_content_keeps_finished_runs(tmp_path):
    experiment = load_experiment(experiment_file(tmp_path))
    out = tmp_path / "out"
    sweep(experiment, out, run_fn=FakeRun(), progress=False, log=lambda _: None)
    (tmp_path / "data").rename(tmp_path / "moved")  # as in a clone at another absolute path
    text = (tmp_path / "exp.yaml").read_text().replace("data/", "moved/")
    (tmp_path / "exp.yaml").write_text(text)
    again = FakeRun()
    sweep(load_experiment(tmp_path / "exp.yaml"), out, run_fn=again, progress=False, log=lambda _: None)
    assert again.calls == []


@pytest.mark.slow
def test_data_edited_in_place_is_redone_and_says_why(tmp_path):
    experiment = load_experiment(experiment_file(tmp_path))
    out = tmp_path / "out"
    sweep(experiment, out, run_fn=FakeRun(), progress=False, log=lambda _: None)
    train = tmp_path / "data" / "train.csv"
    train.write_text(train.read_text() + "2,another q,x,y,B\n")  # same path, new content
    folder = experiment.runs[0].folder
    state, why = record_state(out / folder, experiment.runs[0].config)
    assert state == "redo" and f"the training file {train.resolve()} changed since this run" in why
    again = FakeRun()
    sweep(load_experiment(tmp_path / "exp.yaml"), out, run_fn=again, progress=False, log=lambda _: None)
    assert again.calls == [p.folder for p in experiment.runs]


def test_diverged_record_is_strict_json(tmp_path):
    write_json(tmp_path / RECORD, {"status": "diverged", "loss": [1.5, float("inf"), float("nan")],
                                   "x": {"y": -float("inf")}})
    text = (tmp_path / RECORD).read_text()
    record = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in a record"))
    assert record["loss"] == [1.5, "Infinity", "NaN"] and record["x"]["y"] == "-Infinity"
    assert [float(x) for x in record["loss"]][1] == float("inf")


def test_diverged_run_is_recorded_and_kept_and_the_sweep_goes_on(tmp_path):
    experiment = load_experiment(experiment_file(tmp_path))
    out = tmp_path / "out"
    result = sweep(experiment, out, run_fn=FakeRun(diverge={"lora_alpha-8_seed-0"}), progress=False,
                   log=lambda _: None)
    assert result.diverged == ["lora_alpha-8_seed-0"] and len(result.ran) == 3
    again = FakeRun()
    sweep(experiment, out, run_fn=again, progress=False, log=lambda _: None)
    assert again.calls == []  # a diverged run is a result, not an unfinished one


def test_real_runs_on_a_tiny_model_diverge_and_complete(tmp_path, minilm_tokenizer, science_exam):
    """The real run function: a huge learning rate makes the loss non-finite; the next run still trains."""
    from run_fixtures import save_tiny_bert

    model = save_tiny_bert(tmp_path / "tiny", minilm_tokenizer)
    path = write(tmp_path, f"""
        base:
          train: {science_exam / 'train.csv'}
          valid: {science_exam / 'valid.csv'}
          model: tiny
          train_limit: 8
          valid_limit: 4
          device: cpu
          training: {{batch_size: 2, max_steps: 4, max_length: 32, warmup_ratio: 0.0, max_grad_norm: 0.0}}
        runs:
          - {{name: exploding, strategy: full, lr: 1.0e+30}}
          - {{name: fine, strategy: lora, lr: 1.0e-3}}
        """)
    experiment = load_experiment(path)
    assert experiment.runs[0].config.model == str(model.resolve())
    out = tmp_path / "out"
    result = sweep(experiment, out, progress=False, log=lambda _: None)
    exploded = json.loads((out / experiment.runs[0].folder / RECORD).read_text())
    assert exploded["status"] == "diverged" and exploded["diverged_at_step"] >= 2
    fine = json.loads((out / experiment.runs[1].folder / RECORD).read_text())
    assert fine["status"] == "completed" and fine["valid"]["questions"] == 4
    assert result.diverged == [experiment.runs[0].folder]


def test_cli_sweep_dry_run_and_errors(tmp_path, capsys):
    path = experiment_file(tmp_path)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert capsys.readouterr().out.split()[::2] == ["full_seed-0", "lora_alpha-8_seed-0", "lora_alpha-512_seed-0"]
    assert main(["sweep", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "experiment file not found" in capsys.readouterr().err
    assert main(["sweep", "no-such-packaged", "--out", str(tmp_path / "o")]) == 2
    assert "no packaged experiment" in capsys.readouterr().err


def test_packaged_default_experiment_uses_the_packaged_data():
    experiment = load_experiment(packaged_experiment("default"))
    assert experiment.runs
    for planned in experiment.runs:
        assert Path(planned.config.train).is_file() and Path(planned.config.valid).is_file()
        assert planned.config.model == "minilm"
    assert len({p.folder for p in experiment.runs}) == len(experiment.runs)


def test_a_record_from_before_a_setting_existed_still_matches(tmp_path):
    """Settings added to loralab later (subspace, theta_lr) read as their defaults in older records."""
    from loralab.runs.config import RunConfig
    from loralab.runs.state import same_config

    planned = RunConfig(train=str(tmp_path / "t.csv"))
    old = planned.to_dict()
    del old["training"]["theta_lr"]
    del old["strategy"]["subspace"]
    assert same_config(old, planned)
    old["training"]["lr"] = 1.0
    assert not same_config(old, planned)


def test_shards_split_a_sweep_between_processes(tmp_path):
    experiment = load_experiment(experiment_file(tmp_path))
    out = tmp_path / "out"
    first, second = FakeRun(), FakeRun()
    sweep(experiment, out, run_fn=first, progress=False, log=lambda _: None, shard=(1, 2))
    sweep(experiment, out, run_fn=second, progress=False, log=lambda _: None, shard=(2, 2))
    assert first.calls == ["full_seed-0", "lora_alpha-512_seed-0"] and second.calls == ["lora_alpha-8_seed-0"]
    again = FakeRun()
    sweep(experiment, out, run_fn=again, progress=False, log=lambda _: None)
    assert again.calls == []  # together the shards ran everything
    with pytest.raises(LoralabError, match="invalid shard 3/2"):
        sweep(experiment, out, run_fn=again, progress=False, log=lambda _: None, shard=(3, 2))


def test_data_sets_name_their_run_folders(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.tsv").write_text("sentence\tlabel\nx\t1\ny\t0\n")
    path = write(tmp_path, """
        base: {model: minilm}
        runs:
          - {train: a/train.tsv, valid: a/train.tsv, strategy: full}
          - {train: b/train.tsv, valid: b/train.tsv, strategy: full, columns: [sentence, label]}
        """)
    assert [p.folder for p in load_experiment(path).runs] == ["full_a-train_seed-0", "full_b-train_seed-0"]


@pytest.mark.slow
def test_sweep_rewrites_report_html_after_each_run_with_the_runs_left(tmp_path):
    experiment = load_experiment(experiment_file(tmp_path))
    out, fake, pages = tmp_path / "out", FakeRun(), []

    def watching(config, folder, **kwargs):  # the page as it stands when each run starts
        page = out / "report.html"
        pages.append(page.read_text() if page.exists() else "")
        return fake(config, folder, **kwargs)

    sweep(experiment, out, run_fn=watching, progress=False, log=lambda _: None)
    assert pages[0] == ""
    assert "Sweep running: 1 of 3 planned runs finished, 2 left." in pages[1]
    assert "Sweep running: 2 of 3 planned runs finished, 1 left." in pages[2]
    assert "Sweep finishing: all 3 planned runs finished" in (out / "report.html").read_text()
    again = tmp_path / "again"
    sweep(experiment, again, run_fn=FakeRun(), progress=False, log=lambda _: None, page=False)
    assert not (again / "report.html").exists()


@pytest.mark.parametrize("name,text", [
    ("big.toml", "[base]\ntrain = \"x\"\nseed = " + "9" * 5000 + "\n"),
    ("deep.toml", "a = " + "[" * 200_000 + "]" * 200_000 + "\n"),
    ("big.yaml", "base: {train: x, seed: " + "9" * 5000 + "}\n"),
    ("deep.yaml", "base: " + "[" * 200_000 + "]" * 200_000 + "\n"),
])
def test_parser_limits_are_one_line_errors(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(LoralabError, match=f"{name}: "):
        load_experiment(tmp_path / name)


def test_a_key_given_twice_is_refused_but_merge_keys_override(tmp_path):
    (tmp_path / "dup.yaml").write_text("base: {train: x.csv}\nruns:\n  - strategy: lora\n    lora_r: 4\n    lora_r: 8\n")
    with pytest.raises(LoralabError, match="dup.yaml, line 5: key 'lora_r' is given twice"):
        load_experiment(tmp_path / "dup.yaml")
    (tmp_path / "merge.yaml").write_text("x: &d {lora_r: 4}\nbase:\n  <<: *d\n  lora_r: 8\n")
    from loralab.sweeps.experiment import _read_file

    assert _read_file(tmp_path / "merge.yaml")["base"] == {"lora_r": 8}
