"""benchmarks/scale.py's harness on a tiny Llama configuration: an attempt runs in a child process and
returns its record; the memory limit ends a child that allocates too much, recorded as out of memory;
the ladder skips what is recorded, what its estimate rules out and what a smaller model showed cannot fit."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import limited  # noqa: E402
import scale  # noqa: E402

TINY = dict(model_type="llama", vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)


@pytest.mark.slow  # a fresh interpreter imports torch and transformers: a minute on a loaded machine
@pytest.mark.parametrize("method", ["lora", "lora-bf16"])
def test_an_attempt_runs_in_a_child_and_returns_its_record(method):
    record = limited.run(scale.attempt, (TINY, method, True, 16, 2, 1, 600.0), 4 * limited.GIB, 300)
    assert record["fits"] == limited.FITS, record
    assert record["steps"] == 2 and len(record["losses"]) == 2
    assert record["trainable_params"] == 2 * (8 * (32 + 32) + 8 * (32 + 16))  # q and v adapters, r 8, two layers
    assert 0 < record["peak_rss_gib"] < 4
    if method == "lora-bf16":  # loralab's half base: the frozen matrices in bf16, what trains in fp32
        assert set(record["parameter_gib_by_dtype"]) == {"bfloat16", "float32"}, record


@pytest.mark.parametrize("kernel_limit", [True, False])
def test_the_limit_ends_an_over_allocating_child_as_out_of_memory(kernel_limit):
    # With the kernel's limit the allocation fails inside the child; without it the watchdog kills the child.
    record = limited.run(limited.hold, (2.0, 0.0), 0.5 * limited.GIB, 120, kernel_limit=kernel_limit)
    assert record["fits"] == limited.OUT_OF_MEMORY, record
    assert "held_gib" not in record
    assert ("killed" in record) != kernel_limit
    assert record["peak_rss_gib"] < 1.0


def test_a_child_under_its_limit_finishes():
    record = limited.run(limited.hold, (0.25, 0.0), 1 * limited.GIB, 120)
    assert record["fits"] == limited.FITS and record["held_gib"] == 0.25


def test_the_ladder_estimates_extrapolates_and_resumes(tmp_path, monkeypatch):
    bigger = dict(TINY, hidden_size=64, intermediate_size=128)
    monkeypatch.setattr(scale, "MODELS", {"tiny": TINY, "bigger": bigger})
    calls = []

    def run_here(function, args, limit_bytes, timeout_s):  # in process: the ladder's logic, not the child's
        calls.append(args[:3])
        if args[1] == "full":
            return {"fits": limited.OUT_OF_MEMORY, "peak_rss_gib": 0.5}
        return {"fits": limited.FITS, "peak_rss_gib": 0.4, "seconds_per_step": 0.1, "build_seconds": 0.1}

    monkeypatch.setattr(limited, "run", run_here)
    monkeypatch.setattr(scale, "wait_for_memory", lambda gib, seconds: True)  # whatever else the machine runs
    argv = ["--methods", "full,lora", "--long-length", "0", "--steps", "1", "--results", str(tmp_path), "--name", "t"]
    data = scale.main(argv)
    by = {(r["model"], r["method"], r["checkpointing"]): r for r in data["attempts"]}
    assert len(by) == 8 and len(calls) == 6  # full on the bigger model: not tried, the tiny one did not fit
    assert by[("bigger", "full", False)]["by"] == "extrapolation from tiny"
    assert by[("bigger", "lora", True)]["fits"] == limited.FITS
    assert data["partial"]
    assert json.loads((tmp_path / "t.json").read_text())["attempts"] == data["attempts"]
    assert (tmp_path / "t.png").exists() and "largest model each method trains" in (tmp_path / "t.md").read_text()
    calls.clear()
    monkeypatch.setattr(sys, "argv", ["scale.py", "--methods", "lora"])  # resumed by another command line
    scale.main(argv)  # everything recorded: nothing runs again
    assert calls == []
    commands = json.loads((tmp_path / "t.json").read_text())["settings"]["commands"]
    assert len(commands) == 2 and commands[1] == "python benchmarks/scale.py --methods lora"
    assert "Commands (the ladder resumed)" in (tmp_path / "t.md").read_text()
    data = scale.main(argv + ["--limit-gb", "0.1", "--name", "u"])  # below the interpreter alone
    assert {r["fits"] for r in data["attempts"]} == {limited.OUT_OF_MEMORY} and calls == []


def test_a_qlora_build_holds_one_float_layer_at_a_time(monkeypatch):
    """Each frozen linear layer is made in fp32, quantized, and then let go before the next is made, so the
    build's peak is the quantized model plus one float layer (a list holding them all made a 7B build run out)."""
    import weakref

    import loralab.models.quantize as quantize

    made, alive_at_each = [], []
    real = quantize.quantized_linear

    def watched(layer, config):
        alive_at_each.append(sum(ref() is not None for ref in made))  # float layers still held from before
        made.append(weakref.ref(layer.weight))
        return real(layer, config)

    monkeypatch.setattr(quantize, "quantized_linear", watched)
    model = scale.meta_model(TINY, "qlora")
    scale.materialise(model, "qlora")
    assert len(made) == 2 * 7 and alive_at_each == [0] * len(made)  # q k v o gate up down, two layers
    assert all(ref() is None for ref in made)


@pytest.mark.slow  # two fresh interpreters
def test_an_attempt_dies_with_the_benchmark_that_started_it():
    """A ladder killed mid-attempt (kill -9) leaves no child running on with its memory and a core."""
    import os
    import signal
    import subprocess
    import time

    def stat(pid: int) -> list[str] | None:
        """(state, parent pid, ...) of a live process; None once it is gone or a zombie."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return None if fields[0] in "ZX" else fields

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    parent = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(bench)!r}); import limited; "
                               "limited.run(limited.hold, (0.05, 120.0), limited.GIB, 300)"])

    def children() -> list[int]:
        return [int(p.name) for p in Path("/proc").iterdir()
                if p.name.isdigit() and (fields := stat(int(p.name))) and int(fields[1]) == parent.pid]

    deadline = time.monotonic() + 120
    while not children() and time.monotonic() < deadline:
        time.sleep(0.2)
    kids = children()
    assert kids, "the attempt's child never started"
    time.sleep(2)  # the child is inside its attempt, holding memory for 120 s
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while any(stat(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [k for k in kids if stat(k)] == [], "the attempt outlived the benchmark"
