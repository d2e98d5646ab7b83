"""Does the packed forward keep dropout's statistics? Expected scores and gradients under dropout.

Dropout draws different masks in the packed forward (loralab's dropout, on real tokens only) than in
the model's own padded forward, so single steps differ; what must agree is their expectation. On a
tiny BERT with LoRA on every linear layer and every dropout at p, this averages the choice scores
and the gradients of all trainable parameters over N dropout draws, twice per forward with
different seeds, and prints the mean |z| of the differences: between two padded samples and two
packed samples (what chance gives) and between padded and packed samples.

    python experiments/dropout_expectation.py --samples 2000 --p 0.3
"""

from __future__ import annotations

import argparse
import json

import torch
import transformers

from loralab.strategies import Strategy, StrategyConfig, apply_strategy
from loralab.strategies.lora import LoraConfig, lora_layers
from loralab.tasks.multiple_choice import choice_logits


def build(p: float) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=100,
                                     num_hidden_layers=2, hidden_dropout_prob=p, attention_probs_dropout_prob=p)
    model = transformers.BertForMultipleChoice(config)
    apply_strategy(model, StrategyConfig(Strategy.LORA, LoraConfig(r=4, dropout=p, targets=("all-linear",))))
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_(std=0.1)
    return model.train()


def batch(seq: int = 14) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 100, (3, 4, seq), generator=g)  # (batch, choices, seq)
    lengths = torch.randint(2, seq + 1, (3, 4), generator=g)
    lengths[0, 0] = seq
    mask = (torch.arange(seq) < lengths[..., None]).long()
    return {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask,
            "labels": torch.randint(0, 4, (3,), generator=g), "choice_mask": torch.ones(3, 4, dtype=torch.bool)}


def sample(model, data, packed: bool, seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    scores, grads = [], []
    for _ in range(n):
        model.zero_grad()
        logits = choice_logits(model, data, packed=packed)
        torch.nn.functional.cross_entropy(logits, data["labels"]).backward()
        scores.append(logits.detach().flatten())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    return torch.stack(scores), torch.stack(grads)


def mean_abs_z(a: torch.Tensor, b: torch.Tensor) -> float:
    z = (a.mean(0) - b.mean(0)) / ((a.var(0) + b.var(0)) / len(a)).sqrt().clamp_min(1e-12)
    return round(z.abs().mean().item(), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--p", type=float, default=0.3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, data = build(args.p), batch()
    padded = [sample(model, data, False, seed, args.samples) for seed in (1, 2)]
    packed = [sample(model, data, True, seed, args.samples) for seed in (3, 4)]
    pairs = {"padded vs padded": (padded[0], padded[1]), "packed vs packed": (packed[0], packed[1]),
             "padded vs packed (1)": (padded[0], packed[0]), "padded vs packed (2)": (padded[1], packed[1])}
    result = {"samples": args.samples, "p": args.p, "mean_abs_z": {
        name: {"scores": mean_abs_z(a[0], b[0]), "gradients": mean_abs_z(a[1], b[1])} for name, (a, b) in pairs.items()}}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
