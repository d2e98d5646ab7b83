"""What a decoder now writes: greedy completions of prompts by a trained run or a base model.

Greedy decoding (the most likely token each step) makes the text a function of the weights alone,
so before/after comparisons show what training changed, not sampling noise.
"""

from __future__ import annotations

import torch

from loralab.errors import LoralabError
from loralab.models import is_decoder, load_tokenizer, offline_environment, pad_token_id


def _loaded(run: str | None, model: str | None, device: str):
    from loralab.runs import load_run, resolve_device, task_model
    from loralab.tasks import get_task

    if run:
        loaded = load_run(run, device=device)
        if not is_decoder(loaded.model):
            raise LoralabError(f"{run}: its model is a {type(loaded.model).__name__}, not a decoder; "
                               "generate needs a causal language model")
        return loaded.model, loaded.tokenizer, loaded.device
    offline_environment(True)
    base = task_model(model, get_task("completion"))
    device_ = resolve_device(device)
    return base.to(device_).eval(), load_tokenizer(model), device_


@torch.no_grad()
def generate(*, run: str | None = None, model: str | None = None, prompts: list[str], max_new_tokens: int = 64,
             chat: bool = False, device: str = "auto") -> list[str]:
    """The greedy completion of each prompt (the new text only), by run folder `run` or base model `model`."""
    network, tokenizer, device_ = _loaded(run, model, device)
    outputs = []
    for prompt in prompts:
        if chat:
            if not getattr(tokenizer, "chat_template", None):
                raise LoralabError("--chat: this tokenizer has no chat template")
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)
        else:
            text = prompt
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=True)["input_ids"].to(device_)
        new = network.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                               do_sample=False, pad_token_id=pad_token_id(tokenizer))[0, ids.shape[1]:]
        outputs.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return outputs
