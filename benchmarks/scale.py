"""Which model sizes each method trains on this machine: full fine-tuning, LoRA, LoRA on a bf16 base, QLoRA.

The seed's promise is that LoRA lets commodity hardware adapt models that full fine-tuning cannot.
This measures it: real configurations of the Llama family (Qwen2.5-0.5B to Llama-3.1-8B, written
out below, never downloaded) with random weights, built on the meta device and materialised
tensor by tensor in their target dtype (a bf16 base never passes through fp32; a QLoRA base is
quantized one linear layer at a time), then a few AdamW steps of batch 1 on random tokens. Every
attempt runs in its own child process under a memory limit below the machine's (benchmarks/limited.py),
so running out ends the child and is recorded as "no: out of memory".

Methods (each with and without gradient checkpointing, loralab.models.checkpointing):
- full: every weight trains, fp32, AdamW (weights, gradients and two moments: 16 bytes a parameter);
- lora: loralab's LoRA (q and v, r 8, alpha 32) on an fp32 base;
- lora-bf16: the same on loralab's bf16 base (`--base-dtype bfloat16`: frozen matrices bf16, vectors and adapters fp32),
  computing under bf16 autocast (`--precision bf16`);
- qlora: the same LoRA on an NF4 base with double quantization (float32 compute, benchmarks/common.QUANTIZE);
  embeddings, norms and the output layer stay fp32, as loralab keeps them.

Before an attempt its weights alone (the bytes above, a lower bound) are estimated; an attempt
whose estimate is over the limit is not run ("no: out of memory", by estimate), nor one that a
smaller model of the same method, checkpointing and length already showed cannot fit (by
extrapolation). Results are appended to benchmarks/results/NAME.json after every attempt; a rerun
skips what is recorded, so an interrupted run resumes. The report (NAME.md, NAME.png) is
benchmarks/scale_report.py's.

    python benchmarks/scale.py --threads 2                       # the whole ladder (about an hour)
    python benchmarks/scale.py --only Qwen2.5-0.5B --long-length 0  # one configuration
    python benchmarks/scale.py --max-params 2e9 --limit-gb 16
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import limited  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "guide" / "scale.png"  # the plot docs/guide/scale.md shows

# The published configurations (config.json of each model), as far as memory and time depend on them;
# rope scaling and the sliding-window flags are left out: they change neither.
MODELS = {
    "Qwen2.5-0.5B": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True),
    "Llama-3.2-1B": dict(model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                         rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True),
    "Llama-3.2-3B": dict(model_type="llama", vocab_size=128256, hidden_size=3072, intermediate_size=8192,
                         num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8, head_dim=128,
                         rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True),
    "Qwen2.5-7B": dict(model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                       num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                       rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False),
    "Llama-3.1-8B": dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                         rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False),
}
METHODS = ("full", "lora", "lora-bf16", "qlora")
LORA = {"r": 8, "alpha": 32.0, "targets": ("query", "value")}
QUANTIZE = {"method": "nf4", "double_quant": True, "compute_dtype": "float32"}
OVERHEAD_GIB = 0.5  # the interpreter, torch and transformers before any weight


def config(spec: dict):
    from transformers import AutoConfig

    values = dict(spec)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def meta_model(spec: dict, method: str):
    """The model on the meta device (buffers real: they are small), the strategy applied."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config(spec), attn_implementation="sdpa", dtype=torch.float32)
    model.tie_weights()  # loading would tie the output layer to the embeddings; building on meta does not
    if method != "full":
        from loralab.strategies import StrategyConfig, apply_strategy
        from loralab.strategies.lora import LoraConfig

        apply_strategy(model, StrategyConfig("lora", lora=LoraConfig(**LORA)))
    return model


def counts(spec: dict) -> dict:
    """Parameters of the configuration, those the LoRA adds, and those in linear layers QLoRA quantizes."""
    from loralab.models.quantize import _frozen_linear_layers

    model = meta_model(spec, "lora")
    total = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)
    adapters = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    quantized = sum(layer.weight.numel() for _, _, layer in _frozen_linear_layers(model))
    return {"params": total, "lora_params": adapters, "quantized_params": quantized}


def estimate_gib(method: str, n: dict) -> float:
    """A lower bound of the attempt's memory: its weights, gradients and optimizer state alone."""
    weights = {"full": 16 * n["params"], "lora": 4 * n["params"], "lora-bf16": 2 * n["params"],
               "qlora": 4 * (n["params"] - n["quantized_params"]) + 0.516 * n["quantized_params"]}[method]
    return (weights + 16 * n["lora_params"] * (method != "full")) / limited.GIB + OVERHEAD_GIB


def frozen_dtype(method: str, shape) -> "torch.dtype":
    """The dtype a frozen base parameter is materialised in: lora-bf16 stores the frozen matrices in bf16
    directly (never fp32 first, or the peak would count both), and keeps vectors (norms, biases) in fp32
    as loralab's `--base-dtype bfloat16` does (`loralab.models.half_base`, applied after materialising)."""
    import torch

    return torch.bfloat16 if method == "lora-bf16" and len(shape) >= 2 else torch.float32


def _initialise(name: str, tensor) -> None:
    import math

    import torch

    if name.endswith("lora_B"):
        tensor.zero_()
    elif name.endswith("lora_A"):
        torch.nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
    elif tensor.dim() == 1:
        tensor.fill_(1.0 if "norm" in name else 0.0)  # norm scales 1, biases 0
    else:
        tensor.normal_(0.0, 0.02)  # every page is written: resident, as loaded weights would be


def materialise(model, method: str) -> None:
    """Give every meta parameter real memory in its dtype (trainable fp32, frozen `frozen_dtype`),
    quantizing QLoRA's frozen linear layers one at a time, so the peak holds one float layer at most.
    Tied parameters stay one tensor."""
    import torch

    from loralab.heap import release_heap

    if method == "qlora":
        from loralab.models.quantize import QuantizeConfig, _frozen_linear_layers, quantized_linear

        for parent, attribute, layer in _frozen_linear_layers(model):
            layer.to_empty(device="cpu")
            for name, p in layer.named_parameters():
                with torch.no_grad():
                    _initialise(name, p)
            setattr(parent, attribute, quantized_linear(layer, QuantizeConfig(**QUANTIZE)))
            layer.to_empty(device="meta")  # its float weight goes now: the list above still holds the module
    made = {}
    for module_name, module in model.named_modules():
        for name, p in list(module._parameters.items()):
            if p is None or not p.is_meta:
                continue
            if id(p) not in made:
                dtype = torch.float32 if p.requires_grad else frozen_dtype(method, p.shape)
                tensor = torch.empty(p.shape, dtype=dtype)
                with torch.no_grad():
                    _initialise(f"{module_name}.{name}", tensor)
                made[id(p)] = torch.nn.Parameter(tensor, requires_grad=p.requires_grad)
            module._parameters[name] = made[id(p)]
    release_heap(collect=True)


def attempt(spec: dict, method: str, checkpointing: bool, length: int, steps: int, threads: int,
            max_step_seconds: float, seed: int = 0) -> dict:
    """Build the configuration `spec` for `method` and take `steps` optimizer steps; runs in the child process."""
    import torch

    from loralab.training.optimizer import adamw

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = meta_model(spec, method)
    materialise(model, method)
    if method == "lora-bf16":  # loralab's half base: its layers compute with the bf16 matrices as stored
        from loralab.models import half_base

        half_base(model, "bfloat16")
    if checkpointing:
        from loralab.models.checkpointing import enable

        enable(model)
    model.train()
    optimizer = adamw(model, lr=1e-5, weight_decay=0.0)
    build = time.perf_counter() - start
    record = {"build_seconds": round(build, 1), "rss_after_build_gib": limited.status_kib("self", "VmRSS") / 2**20,
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "parameter_gib_by_dtype": stored(model), "threads": torch.get_num_threads()}
    ids = torch.randint(model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(seed))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=method == "lora-bf16")
    seconds, losses = [], []
    for _ in range(steps):
        tick = time.perf_counter()
        with autocast:
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(round(time.perf_counter() - tick, 2))
        losses.append(round(loss.item(), 4))
        if seconds[-1] > max_step_seconds:
            record["fits"] = limited.TOO_SLOW
            break
    return {**record, "step_seconds": seconds, "seconds_per_step": seconds[-1], "losses": losses,
            "steps": len(seconds), "peak_rss_gib": limited.peak_rss_gib(),
            "load_average_1min": os.getloadavg()[0]}  # the machine is shared: how busy it was


def stored(model) -> dict:
    """GiB the parameters hold, by dtype (NF4 codes count as uint8; their scales live outside parameters)."""
    by: dict[str, float] = {}
    for p in model.parameters():
        by[str(p.dtype).removeprefix("torch.")] = by.get(str(p.dtype).removeprefix("torch."), 0) + p.numel() * p.element_size()
    return {k: round(v / limited.GIB, 3) for k, v in by.items()}


def key(record: dict) -> tuple:
    return record["model"], record["method"], record["checkpointing"], record["length"]


def plan(args) -> list[tuple[str, str, bool]]:
    """(model, method, checkpointing) in the order tried: models by size, then methods."""
    names = [n for n in MODELS if not args.only or n in args.only]
    return [(n, m, c) for n in names for m in args.methods for c in (False, True)]


def run(args) -> dict:
    path = Path(args.results) / f"{args.name}.json"
    data = json.loads(path.read_text()) if path.exists() else {"benchmark": "scale", "attempts": []}
    earlier = data.get("settings", {})
    data.update(machine=machine(args), settings=settings(args))
    ran = earlier.get("commands") or ([earlier["command"]] if "command" in earlier else [])
    data["settings"]["commands"] = ran + [c for c in [data["settings"]["command"]] if c not in ran]  # a resumed ladder's every run
    done = {key(r): r for r in data["attempts"] if r["fits"] != "error"}
    data["attempts"] = [r for r in data["attempts"] if key(r) in done]
    limit = args.limit_gb * limited.GIB
    sizes = {}

    def one(model: str, method: str, ckpt: bool, length: int) -> dict:
        spec = {"model": model, "method": method, "checkpointing": ckpt, "length": length}
        if key(spec) in done:
            return done[key(spec)]
        n = counts_cached(sizes, model)
        record = {**spec, "params": n["params"], "estimate_gib": round(estimate_gib(method, n), 2)}
        smaller = [r for r in data["attempts"] if (r["method"], r["checkpointing"], r["length"]) == (method, ckpt, length)
                   and r["params"] < n["params"] and r["fits"] in (limited.OUT_OF_MEMORY, limited.TOO_SLOW)]
        if record["estimate_gib"] > args.limit_gb:
            record.update(fits=limited.OUT_OF_MEMORY, by="estimate: weights, gradients and optimizer state alone")
        elif smaller:
            record.update(fits=smaller[0]["fits"], by=f"extrapolation from {smaller[0]['model']}")
        elif not wait_for_memory(record["estimate_gib"] + 1, args.wait):
            record.update(fits="error", error=f"the machine never had {record['estimate_gib'] + 1:.1f} GiB available "
                                              f"in {args.wait:.0f} s (other processes' use)")
        else:
            print(f"{model} {method}{' +ckpt' if ckpt else ''} length {length} "
                  f"(estimate {record['estimate_gib']} GiB) ...", file=sys.stderr, flush=True)
            record.update(limited.run(attempt, (MODELS[model], method, ckpt, length, args.steps, args.threads,
                                                args.max_step_seconds, args.seed), limit, args.timeout))
        record = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()}
        print(json.dumps(record), file=sys.stderr, flush=True)
        data["attempts"].append(record)
        done[key(record)] = record
        write(path, data)
        return record

    for model, method, ckpt in plan(args):
        if args.max_params and counts_cached(sizes, model)["params"] > args.max_params:
            continue
        one(model, method, ckpt, args.length)
    if args.long_length:  # the longer sequence for the largest model each method fits at the base length
        for method in args.methods:
            for ckpt in (False, True):
                fitting = [r for r in data["attempts"] if (r["method"], r["checkpointing"], r["length"])
                           == (method, ckpt, args.length) and r["fits"] == limited.FITS]
                if fitting:
                    one(max(fitting, key=lambda r: r["params"])["model"], method, ckpt, args.long_length)
    data["partial"] = not complete(data)
    write(path, data)
    import scale_report

    docs = DOCS if Path(args.results).resolve() == RESULTS and args.name == "scale" else None
    scale_report.report(data, Path(args.results) / args.name, docs)
    return data


def wait_for_memory(gib: float, seconds: float) -> bool:
    """Wait until the machine has `gib` available (a shared machine's other processes come and go)."""
    deadline = time.monotonic() + seconds
    while limited.available() < gib * limited.GIB:
        if time.monotonic() > deadline:
            return False
        time.sleep(5)
    return True


def counts_cached(sizes: dict, model: str) -> dict:
    return sizes.setdefault(model, _counts(json.dumps(MODELS[model], sort_keys=True)))


@functools.lru_cache(maxsize=None)
def _counts(spec: str) -> dict:
    return counts(json.loads(spec))


def complete(data: dict) -> bool:
    """Every configuration, method and checkpointing recorded at length 256."""
    have = {key(r) for r in data["attempts"]}
    return all((n, m, c, 256) in have for n in MODELS for m in METHODS for c in (False, True))


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)  # whole or not at all: an interrupted write keeps the earlier results


def machine(args) -> dict:
    import torch

    import common

    info = common.machine(torch.device("cpu"))
    info["torch_threads"] = args.threads or torch.get_num_threads()
    return {**info, "memory_gib": round(limited.memory_total() / limited.GIB, 2)}


def settings(args) -> dict:
    return {"limit_gib": args.limit_gb, "batch_size": 1, "length": args.length, "long_length": args.long_length,
            "steps": args.steps, "lora": {**LORA, "targets": list(LORA["targets"])}, "quantize": QUANTIZE,
            "max_step_seconds": args.max_step_seconds, "timeout_s": args.timeout,
            "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:])}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_limit = round((limited.memory_total() - 2 * limited.GIB) / limited.GIB, 1)
    p.add_argument("--only", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=[],
                   help=f"comma list of configurations (from {', '.join(MODELS)})")
    p.add_argument("--methods", type=lambda s: [x.strip() for x in s.split(",")], default=list(METHODS),
                   help=f"comma list (from {', '.join(METHODS)})")
    p.add_argument("--max-params", type=float, default=0, help="skip configurations with more parameters (e.g. 2e9)")
    p.add_argument("--limit-gb", type=float, default=default_limit,
                   help=f"memory limit of each attempt in GiB (default: the machine's less 2 GiB, {default_limit})")
    p.add_argument("--length", type=int, default=256, help="tokens in the sequence (batch 1)")
    p.add_argument("--long-length", type=int, default=1024,
                   help="also try this length on the largest configuration each method fits (0: no)")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps; the last one's time is reported")
    p.add_argument("--threads", type=int, default=0, help="torch threads in each attempt (0: torch's default)")
    p.add_argument("--max-step-seconds", type=float, default=600, help="a step slower than this: 'no: too slow'")
    p.add_argument("--timeout", type=float, default=1800, help="seconds an attempt may take in all (build included)")
    p.add_argument("--wait", type=float, default=600,
                   help="seconds to wait, before an attempt, for its estimate + 1 GiB to be available (a shared machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="scale", help="result file stem")
    p.add_argument("--results", default=str(RESULTS), help="folder of the JSON, Markdown and plot")
    p.add_argument("--report-only", action="store_true", help="redraw NAME.md and NAME.png from NAME.json")
    return p


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    unknown = set(args.only) - set(MODELS) | set(args.methods) - set(METHODS)
    if unknown:
        parser().error(f"unknown configurations or methods: {', '.join(sorted(unknown))}")
    if args.report_only:
        import scale_report

        data = json.loads((Path(args.results) / f"{args.name}.json").read_text())
        docs = DOCS if Path(args.results).resolve() == RESULTS and args.name == "scale" else None
        scale_report.report(data, Path(args.results) / args.name, docs)
        return data
    return run(args)


if __name__ == "__main__":
    main()
