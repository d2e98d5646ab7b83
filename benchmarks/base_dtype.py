"""Peak memory of LoRA on a float32 base against a bfloat16 one (`--base-dtype`), each in a fresh process.

Two models, each with both bases:

- `mpnet`: MPNet-base (the packaged `mpnet`, 109M parameters), LoRA q,v r 8 alpha 32, a few steps of
  8 science-exam questions at max length 128 (the packed forward, as `loralab train` runs it);
- `llama-1b`: Llama-3.2-1B's configuration (hidden 2048, 16 layers, 32 heads, 8 kv heads,
  intermediate 8192, vocabulary 128256, tied embeddings; 1.24B parameters) built in the process with
  random weights (never downloaded), LoRA q,v r 8 alpha 16, a couple of causal-LM steps of one
  sequence of 256 random tokens.

Each variant: build the model, apply the strategy, store the frozen base (`loralab.models.half_base`),
reset the RSS high-water mark (`loralab.training.PeakMemory`), take the steps, read the mark. Also
reported: RSS before the first step (the weights, mostly), the bytes of every parameter, the losses
and the median step time (fresh processes, not interleaved: a rough figure).

    python benchmarks/base_dtype.py --threads 1
    python benchmarks/base_dtype.py --threads 1 --cases mpnet --steps 3
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CASES = ("mpnet", "llama-1b")
DTYPES = ("float32", "bfloat16")
LLAMA_1B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, max_position_embeddings=2048,
                rope_theta=500000.0, pad_token_id=0)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def _param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _mpnet(args, dtype: str) -> tuple[torch.nn.Module, list]:
    """(model, steps): MPNet-base with LoRA q,v on a `dtype` base, and a step function per batch."""
    from training import Runner

    from loralab.models import half_base
    from loralab.strategies import Strategy, StrategyConfig, apply_strategy
    from loralab.strategies.lora import LoraConfig
    from loralab.training import TrainConfig

    args.model, args.max_length, args.batches = "mpnet", 128, args.steps
    model, tokenizer, items = common.load(args)
    apply_strategy(model, StrategyConfig(Strategy.LORA, lora=LoraConfig(**common.LORA)))
    half_base(model, dtype)
    runner = Runner(model, TrainConfig(batch_size=args.batch_size, seed=args.seed), torch.device("cpu"), packed=True)
    return model, [lambda g=g: runner.step(g, tokenizer.pad_token_id)["loss"] for g in common.groups(items, args)]


def _llama(args, dtype: str) -> tuple[torch.nn.Module, list]:
    """(model, steps): the 1B Llama configuration, random weights, LoRA q,v on a `dtype` base."""
    import transformers

    from loralab.models import half_base
    from loralab.strategies import Strategy, StrategyConfig, apply_strategy
    from loralab.strategies.lora import LoraConfig

    torch.manual_seed(args.seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA_1B))
    apply_strategy(model, StrategyConfig(Strategy.LORA, lora=LoraConfig(r=8, alpha=16.0, targets=("query", "value"))))
    half_base(model, dtype)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(1, LLAMA_1B["vocab_size"], (args.steps, 1, 256), generator=torch.Generator().manual_seed(0))

    def step(batch: torch.Tensor) -> float:
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return model, [lambda b=b: step(b) for b in ids]


def child(args, case: str, dtype: str) -> dict:
    from loralab.heap import release_heap
    from loralab.training import PeakMemory

    torch.set_num_threads(args.threads or torch.get_num_threads())
    started = time.perf_counter()
    model, steps = (_mpnet if case == "mpnet" else _llama)(args, dtype)
    release_heap(collect=True)  # the float32 weights the cast replaced: handed back before the mark is reset
    built_s = time.perf_counter() - started
    before = _rss_mb()
    losses, seconds = [], []
    with PeakMemory(torch.device("cpu")) as peak:
        for step in steps:
            t0 = time.perf_counter()
            losses.append(step())
            seconds.append(time.perf_counter() - t0)
    return {"peak_mb": peak.peak_mb, "before_mb": before, "added_mb": peak.peak_mb - before,
            "param_bytes": _param_bytes(model),
            "half_params": sum(p.numel() for p in model.parameters() if p.dtype != torch.float32),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "losses": losses, "step_seconds": seconds, "build_seconds": built_s}


def markdown(result: dict) -> str:
    lines = ["# Peak memory of LoRA on a float32 and a bfloat16 base (`--base-dtype`)", "",
             f"`{result['command']}`", "", "## Machine", *[f"- {k}: {v}" for k, v in result["machine"].items()], "",
             "Each variant in a fresh process; peak RSS over the steps after the model is built, the strategy "
             "applied and the frozen base cast (the high-water mark reset then). 'before' = RSS before the first "
             "step; 'added' = peak minus before; param MB = bytes of every parameter. Step s: each step, in that "
             "process alone (rough).", "",
             "| model | base | trainable | param MB | before MB | peak MB | added MB | peak bf16/fp32 | losses | step s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for case, variants in result["results"].items():
        for dtype, r in variants.items():
            ratio = result["ratios"].get(f"{case}_peak_bf16_over_fp32") if dtype == "bfloat16" else None
            lines.append(f"| {case} | {dtype} | {r['trainable_params']:,} | {r['param_bytes'] / 2**20:,.0f} | "
                         f"{r['before_mb']:,.0f} | {r['peak_mb']:,.0f} | {r['added_mb']:,.0f} | "
                         f"{'' if ratio is None else f'**{ratio:.3f}**'} | "
                         f"{', '.join(f'{x:.4f}' for x in r['losses'])} | "
                         f"{', '.join(f'{x:.1f}' for x in r['step_seconds'])} |")
    lines += ["", "Reading it: a packaged model's float32 weights are pages of its memory-mapped safetensors file, "
              "resident only once a step reads them, so MPNet's float32 'before' leaves them out and its peak "
              "counts them; the bf16 copies are the process's own memory from the cast on. The built 1B model's "
              "weights are resident from the start. A half base adds per product a transient float32 copy of the "
              "weight it multiplies by (at most 64 MiB: larger ones are cast a block of rows at a time), which is "
              "why 'added' grows for the 1B model while its peak falls by the weights' halving.",
              "", "## Ratios", "| ratio | value |", "|---|---|",
              *[f"| {k} | {v:.3f} |" for k, v in result["ratios"].items()], ""]
    return "\n".join(lines)


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "base-dtype")
    p.add_argument("--steps", type=int, default=3, help="steps per variant (the first includes warm-up)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list from {', '.join(CASES)}")
    p.add_argument("--child", help="(internal) case:dtype to measure in this process")
    args = p.parse_args(argv)
    if args.child:
        case, dtype = args.child.split(":")
        print(json.dumps(child(args, case, dtype)))
        return None
    device = common.setup(args)
    forwarded = list(sys.argv[1:] if argv is None else argv)
    results: dict[str, dict] = {}
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        if case not in CASES:
            p.error(f"unknown case {case}")
        for dtype in DTYPES:
            out = subprocess.run([sys.executable, __file__, *forwarded, "--child", f"{case}:{dtype}"],
                                 capture_output=True, text=True, check=True)
            results.setdefault(case, {})[dtype] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{case} {dtype}: {results[case][dtype]}", file=sys.stderr)
    ratios = {}
    for case, r in results.items():
        for what in ("peak", "before", "added"):
            ratios[f"{case}_{what}_bf16_over_fp32"] = r["bfloat16"][f"{what}_mb"] / r["float32"][f"{what}_mb"]
        ratios[f"{case}_param_bytes_bf16_over_fp32"] = r["bfloat16"]["param_bytes"] / r["float32"]["param_bytes"]
    result = {"command": "python benchmarks/base_dtype.py " + " ".join(forwarded), "machine": common.machine(device),
              "results": results, "ratios": ratios}
    print(json.dumps(result, indent=2))
    if not args.no_write:
        folder = Path(args.results)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (folder / f"{args.name}.md").write_text(markdown(result))
    return result


if __name__ == "__main__":
    main()
