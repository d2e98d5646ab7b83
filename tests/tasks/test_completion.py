"""The completion task: reading JSON Lines, the loss on completion tokens only, chats, perplexity."""

import json
import re
import math

import pytest
import torch

from conftest import CAUSAL_LM, tiny_model
from loralab.errors import LoralabError
from loralab.metrics import perplexity, token_loss
from loralab.tasks import TaskConfig, infer_task
from loralab.tasks.completion import TASK, EncodedCompletion, Example, collate, encode, read_examples, render


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_reads_prompts_and_chats(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [
        {"prompt": "2+2=", "completion": " 4"},
        "",
        {"id": "c", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    ])
    first, chat = read_examples(path)
    assert (first.id, first.prompt, first.completion) == ("1", "2+2=", " 4")
    assert chat.id == "c" and chat.completion == "hello" and chat.messages[0] == ("user", "hi")
    assert infer_task(path, TaskConfig()) == "completion"


@pytest.mark.parametrize("line, message", [
    ("{not json", r"d.jsonl, line 2: not JSON"),
    ('["a"]', r"line 2: expected a JSON object"),
    ('{"prompt": "x"}', r"line 2, field 'completion': expected a string"),
    ('{"prompt": "", "completion": "y"}', r"line 2, field 'prompt': empty"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}',
     r"line 2, field 'messages': the last message must be the assistant's"),
    ('{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}',
     r"line 2, field 'messages\[0\]'"),
])
def test_bad_lines_are_refused_naming_file_line_and_field(tmp_path, line, message):
    path = write_lines(tmp_path / "d.jsonl", [{"prompt": "a", "completion": "b"}, line])
    with pytest.raises(LoralabError, match=message) as error:
        read_examples(path)
    assert "\n" not in str(error.value)


def test_loss_ignores_the_prompt_tokens():
    """By hand: the mean cross-entropy of the completion's tokens only, each predicted from the one before."""
    model = tiny_model("llama", head=CAUSAL_LM)
    items = [EncodedCompletion((5, 6, 7, 8, 9, 10), prompt_length=3), EncodedCompletion((11, 12, 13, 14), prompt_length=1)]
    batch = collate(items, pad_id=0)
    assert batch["labels"].tolist() == [[-100, -100, -100, 8, 9, 10], [-100, 12, 13, 14, -100, -100]]
    with torch.no_grad():
        loss = TASK.loss(model, batch, packed=False)
        by_hand = []
        for item in items:
            log_probs = torch.log_softmax(model(torch.tensor([item.input_ids])).logits[0], -1)
            by_hand += [-log_probs[t - 1, item.input_ids[t]] for t in range(item.prompt_length, len(item.input_ids))]
        torch.testing.assert_close(loss, torch.stack(by_hand).mean(), atol=1e-5, rtol=0)
        # and the prompt's own tokens do not count: changing the first item's prompt targets changes
        # the context of the completion, so compare with the loss of the prompt tokens themselves
        everything = torch.nn.functional.cross_entropy(
            model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits[0, :-1], batch["input_ids"][0, 1:])
        assert not torch.isclose(loss, everything)
        outputs = TASK.outputs(model, batch, packed=False)
    assert [o[1] for o in outputs] == [3.0, 3.0]
    torch.testing.assert_close(torch.tensor(token_loss(outputs)), loss, atol=1e-5, rtol=0)
    assert perplexity(outputs) == pytest.approx(math.exp(token_loss(outputs)))


def test_a_chat_is_rendered_with_the_template_and_only_the_answer_is_learned(smollm2_tokenizer):
    example = Example("1", "", "Paris.", (("user", "Capital of France?"), ("assistant", "Paris.")))
    prompt, completion = render(example, smollm2_tokenizer)
    assert prompt.endswith("<|im_start|>assistant\n") and "Capital of France?" in prompt
    assert completion.startswith("Paris.")
    item = encode([example], smollm2_tokenizer, 256)[0]
    learned = smollm2_tokenizer.decode(item.input_ids[item.prompt_length:])
    assert learned.startswith("Paris.") and "Capital" not in learned


def test_too_long_examples_cut_the_prompt_first(smollm2_tokenizer):
    item = encode([Example("1", "word " * 300 + "Say ok:", " ok")], smollm2_tokenizer, 32)[0]
    assert len(item.input_ids) == 32
    assert smollm2_tokenizer.decode(item.input_ids[item.prompt_length:]).startswith(" ok")
    assert smollm2_tokenizer.decode(item.input_ids[:item.prompt_length]).endswith("Say ok:")


@pytest.mark.parametrize("text,message", [
    ('{"prompt": "x", "completion": "y", "n": ' + "9" * 5000 + "}\n", "line 1: not readable JSON (Exceeds"),
    ("[" * 200_000 + "]" * 200_000 + "\n", "line 1: not readable JSON (nested too deeply)"),
])
def test_parser_limits_are_one_line_errors(tmp_path, text, message):
    (tmp_path / "d.jsonl").write_text(text)
    with pytest.raises(LoralabError, match=re.escape(message)):
        read_examples(tmp_path / "d.jsonl")
