"""`loralab train --config run.yaml`: a run's settings from a file with an experiment file's keys; the
options given on the command line override the file."""

from __future__ import annotations

import json

from conftest import SCIENCE
from run_fixtures import save_tiny_bert
from loralab.cli import main


def test_a_config_file_sets_the_run_and_options_override_it(tmp_path, minilm_tokenizer, science_exam, capsys):
    save_tiny_bert(tmp_path / "tiny", minilm_tokenizer)
    (tmp_path / "run.yaml").write_text(
        f"train: {SCIENCE / 'train.csv'}\nmodel: tiny\nstrategy: lora\nlora_r: 4\nlr: 0.001\ntrain_limit: 4\n"
        "training:\n  max_steps: 2\n  batch_size: 2\n  max_length: 32\nstrategy.lora.alpha: 8\n")
    code = main(["train", "--config", str(tmp_path / "run.yaml"), "--lr", "0.002", "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "out" / "run.json").read_text())["config"]
    assert config["training"]["lr"] == 0.002  # the option over the file
    assert config["strategy"]["lora"]["r"] == 4 and config["strategy"]["lora"]["alpha"] == 8.0
    assert config["training"]["max_steps"] == 2 and config["train_limit"] == 4
    assert config["model"] == str((tmp_path / "tiny").resolve())  # relative to the file


def test_a_bad_config_file_is_one_line(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("lr: 0.001\n")
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "--train" in capsys.readouterr().err
    (tmp_path / "run.yaml").write_text("train: x.csv\nlearning_rate: 0.001\n")
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "unknown setting 'learning_rate'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
