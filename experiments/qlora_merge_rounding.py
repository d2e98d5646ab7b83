"""What merging a QLoRA run costs in rounding, measured on a real model.

Trains a short QLoRA run (LoRA q,v r 8 alpha 32 on an NF4 base with double quantization), then
scores the same validation questions three ways:

- the run as trained (4-bit base, adapters unmerged: `load_run`),
- the merged float model `loralab merge` writes (dequant(Q(W0)) + s B A, float32, loaded by transformers alone),
- the same adapters on the original float base (W0 + s B A): what the merge would give had the base
  never been quantized, i.e. the quantization error itself.

Prints and writes JSON: the largest absolute difference of the option scores between each pair,
and MAP@3 of each.

    python experiments/qlora_merge_rounding.py --out experiments/results/qlora-merge-rounding
"""

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from loralab.metrics import map_at_k
from loralab.models.quantize import QuantizeConfig
from loralab.runs import load_run, run
from loralab.runs.config import RunConfig
from loralab.runs.merge import merge_run
from loralab.strategies import StrategyConfig
from loralab.strategies.lora import LoraConfig
from loralab.tasks.multiple_choice import encode, read_questions
from loralab.training import TrainConfig, score

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "science-exam"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/qlora-merge-rounding")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--questions", type=int, default=200, help="validation questions scored")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    quantize = QuantizeConfig("nf4", double_quant=True)
    config = RunConfig(train=str(DATA / "train.csv"), model=args.model, train_limit=8 * args.steps,
                       strategy=StrategyConfig("lora", LoraConfig(r=8, alpha=32, dropout=0.1, targets=("query", "value"))),
                       training=TrainConfig(lr=1e-3, batch_size=8, epochs=1, max_length=128, seed=0),
                       quantize=quantize, device="cpu")
    record = run(config, out / "run", progress=False)
    loaded = load_run(out / "run", device="cpu")
    questions = read_questions(DATA / "valid.csv", limit=args.questions)
    items = encode(questions, loaded.tokenizer, 128)
    pad = loaded.tokenizer.pad_token_id

    def scores(model):
        return score(model, items, task=loaded.task, pad_id=pad)  # per question, a score per option

    def flat(values):
        return torch.tensor([v for row in values for v in row])

    quantized = scores(loaded.model)
    with tempfile.TemporaryDirectory() as tmp:
        from transformers import AutoModelForMultipleChoice

        merged_model = AutoModelForMultipleChoice.from_pretrained(merge_run(out / "run", Path(tmp) / "merged"))
        merged = scores(merged_model)
    float_base = load_run(out / "run", device="cpu")  # rebuilt, then given back its float base weights
    from loralab.models import load_model
    from loralab.models.quantize import is_quantized

    plain = load_model(args.model, seed=0)
    float_weights = dict(plain.named_parameters())
    with torch.no_grad():
        for name, module in list(float_base.model.named_modules()):
            for child_name, child in list(module.named_children()):
                if is_quantized(child):
                    full = f"{name}.{child_name}".replace(".base", "")
                    layer = torch.nn.Linear(child.in_features, child.out_features)
                    layer.weight.copy_(float_weights[f"{full}.weight"])
                    layer.bias.copy_(float_weights[f"{full}.bias"])
                    layer.requires_grad_(False)
                    setattr(module, child_name, layer)
    unquantized = scores(float_base.model)
    targets = [item.label for item in items]
    result = {
        "command": "python experiments/qlora_merge_rounding.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "model": args.model, "quantize": record["quantization"], "train_steps": record["steps"],
        "questions": len(items),
        "max_abs_score_difference": {
            "merged_float_vs_quantized_run": (flat(merged) - flat(quantized)).abs().max().item(),
            "float_base_vs_quantized_run": (flat(unquantized) - flat(quantized)).abs().max().item(),
        },
        "score_scale": flat(quantized).abs().max().item(),
        "map@3": {"quantized_run": map_at_k(quantized, targets), "merged_float": map_at_k(merged, targets),
                  "adapters_on_float_base": map_at_k(unquantized, targets)},
    }
    (out / "rounding.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
