"""Files loralab writes follow the umask (0644 under 022, folders 0755), and an overwritten file keeps its mode."""

import os
import stat

import pytest
from run_fixtures import save_tiny_bert, short_run

from loralab.runs.artifacts import save_weights, write_json
from loralab.strategies import Strategy, StrategyConfig


@pytest.fixture
def mask():
    def set_mask(value):
        os.umask(value)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_follow_the_umask(tmp_path, mask):
    import torch

    write_json(tmp_path / "a.json", {"a": 1})
    save_weights(tmp_path / "w.safetensors", {"x": torch.zeros(2)})
    assert mode(tmp_path / "a.json") == 0o644 and mode(tmp_path / "w.safetensors") == 0o644
    mask(0o077)
    write_json(tmp_path / "b.json", {"b": 1})
    assert mode(tmp_path / "b.json") == 0o600


def test_an_overwritten_file_keeps_its_mode(tmp_path, mask):
    for wanted in (0o600, 0o664, 0o640):
        path = tmp_path / f"{wanted:o}.json"
        path.write_text("{}")
        path.chmod(wanted)
        write_json(path, {"new": True})
        assert mode(path) == wanted and '"new"' in path.read_text()


def test_a_run_and_its_merged_folder_follow_the_umask(tmp_path, mask, minilm_tokenizer):
    from loralab.cli import main

    model = save_tiny_bert(tmp_path / "tiny", minilm_tokenizer)
    short_run(tmp_path / "run", model, StrategyConfig(Strategy.LORA))
    assert main(["merge", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "merged")]) == 0
    assert mode(tmp_path / "run") == 0o755 and mode(tmp_path / "merged") == 0o755
    for path in [*(tmp_path / "run").iterdir(), *(tmp_path / "merged").iterdir()]:
        assert mode(path) == 0o644, path
