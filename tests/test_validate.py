"""One rule per number wherever it comes from, and output paths checked before anything runs."""

import math

import pytest

from loralab.errors import LoralabError
from loralab.strategies.lora import LoraConfig
from loralab.training import TrainConfig
from loralab.validate import SettingError, number, output_file, output_folder


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "1", True, None])
def test_non_numbers_and_non_finite_numbers_are_refused(value):
    with pytest.raises(SettingError, match="expected a finite number"):
        number("x", value)


def test_ranges_and_integers():
    assert number("x", 0.5, low=0, high=1, high_open=True) == 0.5
    assert number("x", None, integer=True, optional=True) is None
    with pytest.raises(SettingError, match=r"invalid x=1: expected a finite number >= 0 and < 1"):
        number("x", 1, low=0, high=1, high_open=True)
    with pytest.raises(SettingError, match="expected an integer >= 1"):
        number("x", 2.0, integer=True, low=1)
    with pytest.raises(SettingError, match="> 0"):
        number("x", 0, low=0, low_open=True)


@pytest.mark.parametrize("make,name", [
    (lambda: TrainConfig(epochs=math.inf), "training.epochs"),
    (lambda: TrainConfig(lr=math.nan), "training.lr"),
    (lambda: TrainConfig(eval_batch_size=0), "training.eval_batch_size"),
    (lambda: TrainConfig(divergence_factor=-1.0), "training.divergence_factor"),
    (lambda: LoraConfig(alpha=math.inf), "strategy.lora.alpha"),
    (lambda: LoraConfig(targets=5), "strategy.lora.targets"),
    (lambda: LoraConfig(r=2.5), "strategy.lora.r"),
])
def test_configs_name_the_setting(make, name):
    with pytest.raises(SettingError) as error:
        make()
    assert error.value.name == name and name in str(error.value)


def test_output_folder_rules(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LoralabError, match="exists and is not a folder"):
        output_folder(tmp_path / "file", "--out")
    with pytest.raises(LoralabError, match="is a file, not a folder"):
        output_folder(tmp_path / "file" / "sub", "--out")
    run = tmp_path / "run"
    run.mkdir()
    assert output_folder(run, "--out", nonempty_ok=False) == run  # empty: fine
    (run / "run.json").write_text("{}")
    with pytest.raises(LoralabError, match="already holds run.json"):
        output_folder(run, "--out", forbid=("run.json",))
    with pytest.raises(LoralabError, match="not empty"):
        output_folder(run, "--out", nonempty_ok=False)
    assert output_folder(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"


def test_output_file_rules(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("x")
    with pytest.raises(LoralabError, match="is a folder"):
        output_file(tmp_path, "--out")
    with pytest.raises(LoralabError, match="is also an input"):
        output_file(data, "--out", inputs=[data])
    assert output_file(tmp_path / "new.csv", "--out", inputs=[data]) == tmp_path / "new.csv"
