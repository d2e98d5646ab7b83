"""Decoder training step: loralab's LoRA against peft's on SmolLM2-135M, the same batches, interleaved.

Multiple choice by letter (`loralab.tasks.decoder_choice`), LoRA on every linear layer but the
output layer (r 8, alpha 16), AdamW. Variants, each a fresh copy of the same base model:

- `loralab-lora`: loralab's LoRA layer, the packed forward (`loralab.models.packed_decoder`: the
  linear layers on real tokens only, attention per sequence), scored at the last position only
  (what `loralab train` runs);
- `loralab-lora-padded`: the same with the model's padded forward, so the packed forward's share shows;
- `peft-lora`: peft's LoRA layer through loralab's padded last-position loss (peft with loralab's
  scoring: the strictest baseline);
- `peft-lora-full-logits`: peft's LoRA with the model's own forward, computing every position's
  logits over the whole vocabulary and reading the last (what a plain peft loop does);
- `loralab-qlora`: loralab's LoRA on an NF4 base with double quantization (QLoRA), packed: the cost
  of dequantizing every frozen weight on every step.

Batches are the same for every variant: length-grouped by default (neighbours in length share a
batch, as `loralab train` makes them), or random with `--random` (as a plain loop batches), where
the padding the packed forward skips is larger.
Printed and written as JSON: the median step time of each, and the median of the per-batch ratios.

    python benchmarks/decoder.py --threads 1 --batches 3 --rounds 2
    python benchmarks/decoder.py --threads 1 --batches 3 --rounds 2 --random --name decoder-random
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from loralab.models import load_model, load_tokenizer, pad_token_id  # noqa: E402
from loralab.strategies import Strategy, StrategyConfig, apply_strategy  # noqa: E402
from loralab.strategies.lora import LoraConfig  # noqa: E402
from loralab.tasks.decoder_choice import LETTER, encode_letters  # noqa: E402
from loralab.tasks.multiple_choice import read_questions  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
R, ALPHA = 8, 16.0


def full_logits_loss(model, batch):
    """Cross-entropy over the letters read from the model's own full-vocabulary logits at the last position."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    inputs["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    last = model(**inputs).logits[:, -1]  # (batch, vocab), from (batch, seq, vocab)
    scores = last.gather(1, batch["letters"]).masked_fill(~batch["choice_mask"], torch.finfo(last.dtype).min)
    return torch.nn.functional.cross_entropy(scores, batch["labels"])


def build(base, variant: str):
    model = copy.deepcopy(base)
    if variant.startswith("loralab-"):
        apply_strategy(model, StrategyConfig(Strategy.LORA, LoraConfig(r=R, alpha=ALPHA, targets=("all-linear",))))
        if variant == "loralab-qlora":
            from loralab.models.quantize import QuantizeConfig, quantize_model

            quantize_model(model, QuantizeConfig(method="nf4", double_quant=True))
        packed = variant != "loralab-lora-padded"
        return model, lambda batch: LETTER.loss(model, batch, packed=packed)
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    wrapped = get_peft_model(model, PeftLoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS))
    inner = wrapped.base_model.model  # the same causal LM, its linear layers now peft's
    if variant == "peft-lora":
        return inner, lambda batch: LETTER.loss(inner, batch, packed=False)
    return inner, lambda batch: full_logits_loss(inner, batch)


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "decoder")
    p.set_defaults(model="smollm2", batches=4, rounds=2)
    p.add_argument("--random", action="store_true", help="random batches instead of length-grouped ones")
    args = p.parse_args(argv)
    device = common.setup(args)
    tokenizer = load_tokenizer(args.model)
    base = load_model(args.model, model_class=LETTER.model_class)
    questions = read_questions(args.data, limit=args.batch_size * args.batches)
    items = encode_letters(questions, tokenizer, args.max_length)
    groups = common.groups(items, args, grouped=not args.random)
    pad = pad_token_id(tokenizer)
    batches = [{k: v.to(device) for k, v in LETTER.collate(g, pad).items()} for g in groups]
    variants = ["loralab-lora", "loralab-lora-padded", "peft-lora", "peft-lora-full-logits", "loralab-qlora"]
    built = {}
    for name in variants:
        model, loss_fn = build(base, name)
        model.to(device).train()
        optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        built[name] = (model, loss_fn, optimizer)
    trainable = {name: sum(q.numel() for q in m.parameters() if q.requires_grad) for name, (m, _, _) in built.items()}
    times = {name: [] for name in variants}
    for round_ in range(args.rounds):
        for index, batch in enumerate(batches):
            for name in variants:  # interleaved: the machine's noise falls on every variant alike
                model, loss_fn, optimizer = built[name]
                start = time.perf_counter()
                loss_fn(batch).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                elapsed = time.perf_counter() - start
                if round_ or index:  # the very first step of each is warm-up
                    times[name].append(elapsed)
            print(f"round {round_ + 1} batch {index + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in variants
                                                                          if times[n]), file=sys.stderr)
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))
    result = {
        "benchmark": "decoder", "model": args.model, "machine": common.machine(device),
        "settings": {"batch_size": args.batch_size, "batches": args.batches, "rounds": args.rounds, "r": R,
                     "alpha": ALPHA, "targets": "all-linear (q,k,v,o,gate,up,down)", "scoring": "letter",
                     "batching": "random" if args.random else "length-grouped",
                     "tokens_per_batch": [int(b["attention_mask"].sum()) for b in batches],
                     "padded_tokens_per_batch": [int(b["attention_mask"].numel()) for b in batches]},
        "trainable_params": trainable,
        "median_step_seconds": {n: round(statistics.median(t), 4) for n, t in times.items()},
        "ratios": {"loralab_lora_over_peft_lora": round(ratio("loralab-lora", "peft-lora"), 4),
                   "loralab_lora_over_peft_lora_full_logits": round(ratio("loralab-lora", "peft-lora-full-logits"), 4),
                   "loralab_lora_over_loralab_lora_padded": round(ratio("loralab-lora", "loralab-lora-padded"), 4),
                   "loralab_lora_padded_over_peft_lora": round(ratio("loralab-lora-padded", "peft-lora"), 4),
                   "loralab_qlora_over_loralab_lora": round(ratio("loralab-qlora", "loralab-lora"), 4)},
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        (common.RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
