"""Run folders on disk: what a kill while saving leaves behind is removed when the folder is reused."""

from run_fixtures import save_tiny_bert, short_run

from loralab.runs.artifacts import remove_leftovers
from loralab.strategies import Strategy, StrategyConfig

LEFTOVERS = (".weights.safetensors.k19u39ha.tmp", ".run.json.abcd1234.tmp", ".tmpab12cd34", "tmp307q8pm6")
KEPT = ("notes.tmp", ".weights.safetensors.tmp", "data.csv")


def test_remove_leftovers_takes_only_temporary_files(tmp_path):
    for name in LEFTOVERS + KEPT:
        (tmp_path / name).write_bytes(b"x" * 10)
    assert sorted(remove_leftovers(tmp_path)) == sorted(LEFTOVERS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(KEPT)


def test_a_rerun_in_a_killed_runs_folder_removes_its_leftovers(tmp_path, minilm_tokenizer):
    model = save_tiny_bert(tmp_path / "tiny", minilm_tokenizer)
    out = tmp_path / "run"
    out.mkdir()
    for name in LEFTOVERS:  # as a kill -9 during save_weights leaves them
        (out / name).write_bytes(b"\0" * 100)
    record = short_run(out, model, StrategyConfig(Strategy.LORA))
    assert record["status"] == "completed"
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "weights.safetensors"]
