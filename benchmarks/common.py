"""What every benchmark shares: the machine description, the data, the models under test, timing
helpers and the result files.

Figures are ratios measured inside one process, interleaved step by step, so that the noise of a
shared machine falls on numerator and denominator alike.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "science-exam" / "train.csv"
RESULTS = Path(__file__).resolve().parent / "results"

# The LoRA setting compared everywhere: q and v adapted, r=8, alpha=32 (dropout given per variant).
LORA = {"r": 8, "alpha": 32.0, "targets": ("query", "value")}


def parser(description: str, default_name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="minilm", help="packaged alias or local folder (mpnet: see ../shared/data/README.md)")
    p.add_argument("--data", default=str(DATA), help="multiple-choice CSV (id,prompt,A..E,answer)")
    p.add_argument("--batch-size", type=int, default=8, help="questions per step")
    p.add_argument("--batches", type=int, default=6, help="distinct batches per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds over the batches; the first batch of round 1 is warm-up")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=default_name, help="result file stem under benchmarks/results/")
    p.add_argument("--no-write", action="store_true", help="print the JSON only")
    p.add_argument("--results", default=str(RESULTS), help="folder the JSON and Markdown go to")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: every variant computes under bf16 autocast (fp32 master weights)")
    return p


def setup(args) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(args.device)


def machine(device: torch.device) -> dict:
    from loralab.machine import cpu_name

    cpu = cpu_name()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    import transformers

    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_average_1min": load,
            "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import peft

        info["peft"] = peft.__version__
    except ImportError:
        pass
    return info


def load(args):
    """(base model, tokenizer, encoded questions) for the run's model and data."""
    from loralab.models import load_model

    items = load_items(args, args.batch_size * args.batches)
    return load_model(args.model, seed=args.seed), _tokenizer(args.model), items


def load_items(args, count: int):
    """The first `count` questions of the data file, tokenized."""
    from loralab.tasks.multiple_choice import encode
    from loralab.tasks.multiple_choice import read_questions

    return encode(read_questions(args.data, limit=count), _tokenizer(args.model), args.max_length)


def _tokenizer(name: str):
    from loralab.models import load_tokenizer

    return load_tokenizer(name)


def groups(items, args, grouped: bool = False) -> list[list]:
    """Fixed random batches of questions (seeded), the same for every strategy; `grouped` sorts by length first."""
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(args.seed)).tolist()
    if grouped:  # neighbours in length share a batch, as loralab.training's length-grouped batches
        order = sorted(order, key=lambda i: items[i].longest)
    return [[items[i] for i in order[s : s + args.batch_size]] for s in range(0, len(order), args.batch_size)]


# The random subspace compared with full fine-tuning: Fastfood at d = 10,000 over every weight.
SUBSPACE = {"dim": 10_000, "projection": "fastfood"}


# QLoRA as measured: NF4 with double quantization, float32 compute (loralab.models.quantize).
QUANTIZE = {"method": "nf4", "double_quant": True, "compute_dtype": "float32"}


def build(base: torch.nn.Module, variant: str, lora_dropout: float = 0.0) -> torch.nn.Module:
    """A fresh copy of `base` prepared by loralab's strategy `variant`, or by peft for 'peft'.

    "qlora" is loralab's LoRA on a base quantized as `QUANTIZE`; a "-ckpt" suffix turns on gradient
    checkpointing (`loralab.models.checkpointing`) for the variant it ends.
    """
    checkpointed = variant.endswith("-ckpt")
    variant = variant.removesuffix("-ckpt")
    model = _prepared(base, "lora" if variant == "qlora" else variant, lora_dropout)
    if variant == "qlora":
        from loralab.models.quantize import QuantizeConfig, quantize_model

        quantize_model(model, QuantizeConfig(**QUANTIZE))
    if checkpointed:
        from loralab.models.checkpointing import enable

        enable(model)
    return model


def _prepared(base: torch.nn.Module, variant: str, lora_dropout: float) -> torch.nn.Module:
    model = copy.deepcopy(base)
    if variant in ("subspace", "subspace-reference"):
        from loralab.strategies import StrategyConfig, apply_strategy
        from loralab.strategies.subspace import SubspaceConfig

        apply_strategy(model, StrategyConfig("subspace", subspace=SubspaceConfig(**SUBSPACE)))
        if variant == "subspace-reference":
            _original_transform(model)
        return model
    if variant == "peft":
        from peft import LoraConfig as PeftLoraConfig, get_peft_model
        from loralab.models import architecture

        arch = architecture(model)
        targets = [getattr(arch, role) for role in LORA["targets"]]
        config = PeftLoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=lora_dropout,
                                target_modules=targets, modules_to_save=list(arch.head))
        return get_peft_model(model, config)
    from loralab.strategies import StrategyConfig, apply_strategy
    from loralab.strategies.lora import LoraConfig

    lora = LoraConfig(r=LORA["r"], alpha=LORA["alpha"], dropout=lora_dropout, targets=LORA["targets"])
    apply_strategy(model, StrategyConfig(variant, lora=lora))
    return model


def _original_transform(model: torch.nn.Module) -> None:
    """Make a Fastfood subspace compute W0 + P theta as loralab first did: per tensor, pass by pass,
    with autograd through every step (the reference kept in tests/strategies/subspace), for timing
    the transform before and after in one run."""
    from torch.nn.utils import parametrize

    sys.path.insert(0, str(ROOT / "tests" / "strategies" / "subspace"))
    import reference_fastfood

    for module in model.modules():
        if parametrize.is_parametrized(module):
            for plist in module.parametrizations.values():
                shift = plist[0]
                subspace = shift._subspace[0]

                def forward(original, shift=shift, subspace=subspace):
                    rows = reference_fastfood.rows(subspace.projection, subspace.theta, shift.index)
                    return original + rows.view(original.shape).to(original.dtype)

                shift.forward = forward


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def write(name: str, record: dict, markdown: str, no_write: bool = False, folder: str | Path = RESULTS) -> None:
    print(json.dumps(record, indent=2))
    if no_write:
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (folder / f"{name}.md").write_text(markdown)
    print(f"wrote {folder / name}.json and .md", file=sys.stderr)


def machine_lines(info: dict) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in info.items())


def table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
