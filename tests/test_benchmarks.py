"""The benchmark scripts run end to end on the packaged MiniLM, and the fast LoRA paths they
measure compute the same values and gradients as the plain formula h = W0 x + s B A dropout(x)."""

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from loralab.dropout import dropout as drop
from loralab.strategies.lora import LoraLinear

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

# (training mode, dropout, base weight trains, bias): every branch of LoraLinear.forward
PATHS = [
    (True, 0.0, False, True),   # fused (W0 + s B A) x, training
    (False, 0.0, False, True),  # fused, eval
    (True, 0.0, True, False),   # fused, base weight unfrozen, no bias
    (False, 0.3, False, True),  # dropout is off in eval: fused
    (True, 0.3, False, True),   # dropout on: addmm path
]


@pytest.mark.parametrize("training,dropout,base_trains,bias", PATHS)
def test_lora_paths_match_the_formula(training, dropout, base_trains, bias):
    torch.manual_seed(0)
    base = nn.Linear(6, 5, bias=bias).double()
    layer = LoraLinear(base, r=3, scaling=2.0, dropout=dropout).double().train(training)
    nn.init.normal_(layer.lora_B)
    base.weight.requires_grad_(base_trains)
    x = torch.randn(2, 4, 6, dtype=torch.double, requires_grad=True)
    torch.manual_seed(1)
    out = layer(x)
    torch.manual_seed(1)  # the same dropout mask for the reference
    ref = base(x) + (drop(x, layer.dropout) @ layer.lora_A.t() @ layer.lora_B.t()) * 2.0
    assert torch.allclose(out, ref)
    wrt = [x, layer.lora_A, layer.lora_B] + ([base.weight] if base_trains else [])
    g = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, wrt, g), torch.autograd.grad(ref, wrt, g)):
        assert torch.allclose(got, want)


SMOKE = ["--batch-size", "2", "--batches", "2", "--rounds", "1", "--max-length", "32", "--no-write"]


@pytest.mark.slow
def test_training_benchmark_reports_ratios():
    import training

    record = training.main(SMOKE + ["--epoch-questions", "4"])
    assert record["paired_steps"] == 1
    assert record["variants"]["full"]["step_over_full"] == 1.0
    for name, ratio in record["ratios"].items():
        assert math.isfinite(ratio) and ratio > 0, name
    lora = record["variants"]["lora"]
    assert lora["trainable_params"] < record["variants"]["full"]["trainable_params"]
    assert set(lora["phases_seconds"]) == {"data", "forward", "backward", "optimizer"}
    assert "subspace-fastfood-10000_over_full" in record["ratios"]
    assert {"loralab_lora_over_peft_lora", "loralab_lora_padded_over_peft_lora"} <= set(record["ratios"])
    assert 0 < record["real_token_share"] <= 1
    assert record["variants"]["subspace-fastfood-10000"]["trainable_params"] == 10_000 + 385  # theta + MiniLM's head
    assert {"full_bf16_over_fp32", "lora_bf16_over_fp32"} <= set(record["ratios"])
    assert set(record["gemm_gflop_per_second"]) == {"fp32", "bf16"}
    for label, variant in record["variants"].items():  # every strategy's utilisation, against its precision's rate
        assert 0 < variant["mfu"] < 10 and variant["model_gflop_per_step"] > 0, label
        rate = record["gemm_gflop_per_second"][variant["precision"]]
        assert math.isclose(variant["mfu"], variant["gflop_per_second"] / rate, rel_tol=1e-9), label  # one paired step
    full, lora = record["variants"]["full"], record["variants"]["lora"]
    assert lora["model_gflop_per_step"] < full["model_gflop_per_step"]  # no weight gradients for frozen layers


def test_inference_benchmark_merged_equals_unmerged():
    import inference

    record = inference.main(SMOKE)
    assert record["merged_equals_unmerged"]
    assert record["variants"]["base"]["over_base"] == 1.0
    assert math.isfinite(record["ratios"]["merged_over_base"])


def test_distributed_benchmark_counts_what_each_strategy_reduces():
    import distributed

    record = distributed.main(["--no-timing", "--no-write"])
    assert record["subspace_count_checked_on_minilm"]
    for rows in record["bytes_per_step"].values():
        assert rows["full"]["trained_params"] == rows["full"]["total_params"]
        assert rows["full"]["ddp_allreduce_bytes_per_step"] == 4 * rows["full"]["total_params"]
        assert rows["lora"]["over_full"] < rows["qv"]["over_full"] < rows["attention"]["over_full"] < 1
    llama = record["bytes_per_step"]["Llama 7B (LLaMA-1 7B shape, classification head)"]
    # r = 8 on q and v of 32 layers of width 4096, plus the 4096 x 2 head
    assert llama["lora"]["trained_params"] == 32 * 2 * (8 * 4096 + 4096 * 8) + 4096 * 2


@pytest.mark.slow
def test_memory_benchmark_qlora_and_checkpointing():
    import memory

    record = memory.main(SMOKE + ["--threads", "1", "--variants", "qlora,qlora-ckpt"])  # two fresh processes
    ratios = record["ratios"]
    assert ratios["qlora_quantized_layer_bytes_over_float"] <= 0.20  # NF4 with double quantization: about 0.13
    assert ratios["qlora_weight_bytes_over_float"] < 1  # embeddings and norms stay float
    assert ratios["qlora-ckpt_losses_equal_qlora"] is True
    assert record["variants"]["qlora"]["quantized_layers"] == 6 * 6 + 1  # MiniLM: 6 layers of 6, and the pooler
    assert math.isfinite(ratios["qlora-ckpt_step_seconds_over_qlora"]) and ratios["qlora-ckpt_step_seconds_over_qlora"] > 0
    assert record["variants"]["qlora-ckpt"]["peak_mb"] > 0


@pytest.mark.slow
def test_heap_benchmark_trims_without_changing_the_losses():
    import heap

    record = heap.main(SMOKE + ["--threads", "1", "--variants", "lora", "--train-steps", "3", "--train-limit", "24",
                                "--every", "1,2"])  # three fresh `loralab train` processes and one timed
    lora = record["variants"]["lora"]
    assert lora["losses_equal"] is True and lora["train_steps"] == 3
    assert lora["peak_mb_untrimmed"] > 0 and lora["peak_mb_every_1"] > 0 and lora["peak_mb_every_2"] > 0
    assert lora["pairs"] >= 2 and lora["trimmed_over_plain"] > 0 and lora["trim_call_seconds"] >= 0


def _counted_flops(model, batch) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("how", ["full", "attention", "qv", "lora-dropout", "peft"])
def test_model_flops_from_shapes_equal_torch_flop_counter(how):
    """benchmarks/flops.py's count from the shapes equals what torch's FLOP counter sees in a plain (eager
    attention, unpadded) forward and backward, strategy by strategy. LoRA is checked on its unfused path
    (dropout on), which runs exactly the adapter's two products; the fused path computes the same model."""
    import flops
    from conftest import tiny_batch, tiny_model
    from loralab.strategies import StrategyConfig, apply_strategy
    from loralab.strategies.lora import LoraConfig

    model = tiny_model("bert")
    model.set_attn_implementation("eager")
    if how == "peft":
        from peft import LoraConfig as PeftLoraConfig, get_peft_model

        model = get_peft_model(model, PeftLoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                     modules_to_save=["classifier"]))
    else:
        lora = LoraConfig(r=4, dropout=0.1 if how == "lora-dropout" else 0.0)
        apply_strategy(model, StrategyConfig(how.removesuffix("-dropout"), lora=lora))
    batch = tiny_batch()
    batch["attention_mask"][:] = 1  # no padding: the model computes on real tokens only
    lengths = [batch["input_ids"].shape[-1]] * (batch["input_ids"].shape[0] * batch["input_ids"].shape[1])
    counted = flops.step_flops(model.train(), lengths)
    assert counted["total"] == _counted_flops(model, batch)
    assert counted["attention"] > 0 and (counted["lora"] > 0) == (how in ("lora-dropout", "peft"))


def test_gemm_rate_is_a_positive_rate():
    import flops

    rate = flops.gemm_rate([(32, 64), (64, 32)], tokens=48)
    assert math.isfinite(rate) and rate > 1e6  # FLOP/s; any machine that runs the suite does more than a megaflop


@pytest.mark.slow
def test_gpu_script_dry_run_runs_every_benchmark_on_cpu(tmp_path):
    """`bash benchmarks/gpu.sh --dry-run` (CPU, tiny sizes) runs the GPU script's three benchmarks end to end
    and writes their JSON, so the script cannot rot before a GPU runs it. A tiny BERT with MiniLM's
    vocabulary stands in for MiniLM here to keep the suite fast; the script's own dry run uses MiniLM."""
    import json
    import os
    import subprocess

    from loralab.models import load_tokenizer
    from run_fixtures import save_tiny_bert

    model = save_tiny_bert(tmp_path / "tiny", load_tokenizer("minilm"))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"
    env = {**os.environ, "PYTHON": sys.executable, "RESULTS": str(tmp_path / "results"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(["bash", str(script), "--dry-run", "--model", str(model)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    training = json.loads((tmp_path / "results" / "training-dry-run.json").read_text())
    assert {"full_bf16_over_fp32", "lora_bf16_over_fp32", "subspace-fastfood-10000_over_full"} <= set(training["ratios"])
    assert all(v["mfu"] > 0 for v in training["variants"].values())
    for name in ("inference", "memory"):
        record = json.loads((tmp_path / "results" / f"{name}-dry-run.json").read_text())
        assert record["precision"] == "bf16" and record["machine"]["device"] == "cpu"


def test_gpu_script_refuses_to_run_without_cuda(tmp_path):
    import os
    import subprocess

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"
    done = subprocess.run(["bash", str(script)], env={**os.environ, "PYTHON": sys.executable,
                                                      "RESULTS": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no CUDA device" in done.stderr and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_methods_benchmark_reports_every_method_against_lora():
    import methods

    record = methods.main(SMOKE + ["--methods", "dora,vera,galore,peft-lora,peft-dora", "--memory-batches", "0"])
    assert record["timed_steps"] == 1
    assert set(record["methods"]) == {"lora", "dora", "vera", "galore", "peft-lora", "peft-dora"}
    assert record["methods"]["lora"]["step_over_lora"] == 1.0
    assert record["ratios"]["loralab_dora_over_peft_dora"] > 0


@pytest.mark.slow
def test_bf16_profile_shares_every_part_of_the_step():
    import bf16_profile

    record = bf16_profile.main(SMOKE + ["--threads", "1", "--steps", "1", "--variants", "full-bf16,lora-bf16"])
    for label, shares in record["shares"].items():
        assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-9) and shares["products"] > 0, label
    assert record["shares"]["full-bf16"]["adamw"] > 0 and record["profiled_step_seconds"]["lora-bf16"]["step"] > 0


def test_cost_curves_fit_length_by_its_quadratic_and_count_each_axis_by_its_form():
    import cost

    lengths = [64, 128, 256, 512, 1024]
    seconds = [0.1 + 2e-3 * n + 1e-6 * n * n for n in lengths]
    curve = cost.curves(lengths, seconds)
    assert curve["quadratic"]["held_out"]["error"] == pytest.approx(0.0, abs=1e-6)
    assert curve["affine"]["held_out"]["error"] < -0.05
    batches = [1, 2, 4, 8]
    line = cost._within({"m/full": {"time_length": curve, "time_batch": cost.curves(batches, [0.3 + 0.2 * b for b in batches])}})
    assert "Each axis by the form its work takes" in line and "the largest point 2 of 2" in line
    assert "quadratic" not in cost.curves([1, 2, 4], [1.0, 2.0, 4.0])  # three points leave none to hold out


def test_cost_reuses_runs_split_by_model(tmp_path):
    """A wide grid measured one model per run (the machine's time is short) is analysed as one."""
    import json

    import cost

    whole = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/cost.json").read_text())
    parts = []
    for model in whole["step_times"]:
        part = tmp_path / f"{model}.json"
        part.write_text(json.dumps({"command": model, "step_times": {model: whole["step_times"][model]},
                                    "memory": {model: whole["memory"][model]}}))
        parts.append(str(part))
    record = cost.main(["--threads", "1", "--reuse", *parts, "--results", str(tmp_path), "--name", "merged"])
    assert record["fits"].keys() == whole["fits"].keys()
    for name, entry in whole["fits"].items():
        assert record["fits"][name]["time_length"]["exponent"] == entry["time_length"]["exponent"]
        assert record["fits"][name]["memory_batch"]["exponent"] == entry["memory_batch"]["exponent"]
