"""The one table of architecture knowledge, and what reads it.

Which modules are the query, key, value and attention-output projections, which modules are the
task head, and how the packed forward walks an encoder differs per architecture; every strategy,
the packed forward, fingerprints and the peft translation ask `architecture(model)` instead of
matching module names themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch

from loralab.errors import LoralabError
from loralab.names import has_prefix


class Head(enum.Enum):
    """A task-model class loralab builds (`Task.model_class`), by how transformers ends its name."""

    MULTIPLE_CHOICE = "ForMultipleChoice"
    SEQUENCE_CLASSIFICATION = "ForSequenceClassification"
    CAUSAL_LM = "ForCausalLM"  # a decoder's own language-model head: pretrained, so no new head


class Layer(enum.Enum):
    """How one encoder layer is laid out, as the packed forward calls its modules."""

    BERT = "bert"  # attention.self.{query,key,value}, attention.output.{dense,dropout,LayerNorm}, intermediate, output
    MPNET = "mpnet"  # attention.attn.{q,k,v,o,dropout}, attention.{dropout,LayerNorm}, intermediate, output


@dataclass(frozen=True)
class Packed:
    """How the packed forward (`loralab.models.packed`) runs an architecture's multiple-choice model."""

    encoder: str  # attribute of the task model holding the encoder
    layer: Layer  # layout of one encoder layer
    positions_from_padding: bool  # positions count real tokens from padding_idx + 1 (RoBERTa, MPNet)
    token_types: bool  # embeddings add a token-type table
    relative_bias: bool = False  # attention adds a relative position bias (MPNet)


@dataclass(frozen=True)
class Architecture:
    """What loralab knows of one architecture (one `config.model_type`)."""

    query: str  # module-name suffixes of the attention projections, matched on a dot boundary
    key: str
    value: str
    attention_output: str
    # Per task-model class, the modules that train as its head: what the class adds on top of the encoder, and any
    # part of the encoder its pretrained checkpoints leave untrained (MPNet's pooler).
    heads: Mapping[Head, tuple[str, ...]]
    packed: Packed | None = None  # None: the multiple-choice model always takes its own forward
    output: str = ""  # a decoder's output projection (lm_head): never adapted, often tied to the embeddings
    # The feed-forward block's output projection, whose input is the FFN's inner activation (IA3 scales it); a
    # suffix that may also end the attention output's name (BERT's `output.dense`), which is not it.
    ffn_output: str = "output.dense"
    head: tuple[str, ...] = ()
    """The head of the one model `architecture(model)` was asked about; empty in the table."""
    untrained: tuple[str, ...] = ()
    """Modules of that model's checkpoint found untrained and marked to train with the head (`mark_untrained`);
    part of `head`, but pretrained weights as far as the fingerprint goes."""

    def role(self, name: str) -> str:
        """The suffix for a role name (`query`, `key`, `value`, `attention_output`)."""
        if name not in ROLES:
            raise LoralabError(f"unknown projection role {name!r}; expected one of {', '.join(ROLES)}")
        return getattr(self, name)


ROLES = ("query", "key", "value", "attention_output")

MULTIPLE_CHOICE, CLASSIFICATION = Head.MULTIPLE_CHOICE, Head.SEQUENCE_CLASSIFICATION
_BERT = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")
_CLASSIFIER = {MULTIPLE_CHOICE: ("classifier",), CLASSIFICATION: ("classifier",)}
_ROBERTA_PACKED = Packed("roberta", Layer.BERT, positions_from_padding=True, token_types=True)

_LLAMA = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")


def _decoder(projections: tuple[str, str, str, str], ffn_output: str = "mlp.down_proj") -> Architecture:
    return Architecture(*projections, {CLASSIFICATION: ("score",), Head.CAUSAL_LM: ()}, output="lm_head",
                        ffn_output=ffn_output)


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture(*_BERT, _CLASSIFIER, Packed("bert", Layer.BERT, positions_from_padding=False, token_types=True)),
    "roberta": Architecture(*_BERT, _CLASSIFIER, _ROBERTA_PACKED),
    "xlm-roberta": Architecture(*_BERT, _CLASSIFIER, _ROBERTA_PACKED),
    # ELECTRA's multiple-choice model pools through a new `sequence_summary` (a linear layer) before its classifier.
    "electra": Architecture(*_BERT, {MULTIPLE_CHOICE: ("sequence_summary", "classifier"), CLASSIFICATION: ("classifier",)}),
    # MPNet's pretraining has no sentence-level objective, so its checkpoints ship the pooler untrained (all-mpnet-base-v2:
    # weights at their initialisation, std 0.020, bias 0). The multiple-choice model scores through it, so it trains with
    # the head; frozen, LoRA runs stayed at the loss plateau (ln 5) for most or all of an epoch. Other checkpoints'
    # untrained poolers (all-MiniLM-L6-v2's) are found by their weights (`head_start.untrained_modules`); this entry
    # keeps MPNet's training even with that detection off, as it always has.
    "mpnet": Architecture("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
                          {MULTIPLE_CHOICE: ("mpnet.pooler", "classifier"), CLASSIFICATION: ("classifier",)},
                          Packed("mpnet", Layer.MPNET, positions_from_padding=True, token_types=False, relative_bias=True)),
    "deberta-v2": Architecture("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj",
                               "attention.output.dense",
                               {MULTIPLE_CHOICE: ("pooler", "classifier"), CLASSIFICATION: ("pooler", "classifier")}),
    # DeBERTa fuses q, k and v into one `in_proj`: selecting any of them selects all three.
    "deberta": Architecture("attention.self.in_proj", "attention.self.in_proj", "attention.self.in_proj",
                            "attention.output.dense", {CLASSIFICATION: ("pooler", "classifier")}),
    "distilbert": Architecture("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                               {MULTIPLE_CHOICE: ("pre_classifier", "classifier"),
                                CLASSIFICATION: ("pre_classifier", "classifier")}, ffn_output="ffn.lin2"),
    # Decoders: a causal LM keeps its pretrained output layer, so it has no new head; classification adds `score`.
    "llama": _decoder(_LLAMA),
    "mistral": _decoder(_LLAMA),
    "qwen2": _decoder(_LLAMA),
    "gemma": _decoder(_LLAMA),
    "gemma3_text": _decoder(_LLAMA),
    # Phi-3 fuses q, k and v into one `qkv_proj`: selecting any of them selects all three.
    "phi3": _decoder(("self_attn.qkv_proj", "self_attn.qkv_proj", "self_attn.qkv_proj", "self_attn.o_proj")),
    # GPT-2 fuses q, k and v into one Conv1D: selecting any of them selects all three.
    "gpt2": _decoder(("attn.c_attn", "attn.c_attn", "attn.c_attn", "attn.c_proj"), ffn_output="mlp.c_proj"),
}

DECODER_TYPES = frozenset(t for t, a in ARCHITECTURES.items() if Head.CAUSAL_LM in a.heads)
"""The model types whose architecture has a causal language model: the decoders."""


def head_class(model: torch.nn.Module) -> Head | None:
    """Which task-model class `model` is (None: one loralab does not build)."""
    name = type(model).__name__
    if name.endswith("LMHeadModel"):  # GPT-2's causal LM predates the ForCausalLM naming
        return Head.CAUSAL_LM
    return next((h for h in Head if name.endswith(h.value)), None)


def architecture(model: torch.nn.Module) -> Architecture:
    """The table's entry for `model`'s architecture, with `head` set to the head of `model`'s class."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise LoralabError(
            f"architecture {model_type!r} is not in loralab's table; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    arch = ARCHITECTURES[model_type]
    kind = head_class(model)
    if kind not in arch.heads:
        known = ", ".join(f"*{h.value}" for h in arch.heads)
        raise LoralabError(f"loralab knows the task head of {model_type} models of the classes {known}, "
                           f"not of a {type(model).__name__}")
    head = arch.heads[kind]
    untrained = tuple(n for n in getattr(model, UNTRAINED, ()) if n not in head)
    return replace(arch, head=head + untrained, untrained=untrained)


UNTRAINED = "_loralab_untrained"
"""The attribute of a task model naming the modules `mark_untrained` added to its head."""


def mark_untrained(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """From now on `names` (modules of `model`'s checkpoint left at their initialisation) train as part of
    its head: strategies unfreeze them with it, runs save them with it, and `head_lr` applies to them."""
    for name in names:
        model.get_submodule(name)  # a name the model does not have is an error here, not a silent no-op
    setattr(model, UNTRAINED, tuple(names))


def is_linear(module: torch.nn.Module) -> bool:
    """An nn.Linear, or transformers' Conv1D (GPT-2): the same y = x W^T + b, with W stored as (in, out)."""
    from transformers.pytorch_utils import Conv1D  # here, so that importing loralab does not import transformers

    return isinstance(module, (torch.nn.Linear, Conv1D))


def is_head(name: str, arch: Architecture) -> bool:
    """True when the module or parameter `name` belongs to the task head."""
    return any(has_prefix(name, h) for h in arch.head)


def is_output(name: str, arch: Architecture) -> bool:
    """True for a decoder's output projection (`lm_head`), which no strategy adapts by a role or `all-linear`."""
    return bool(arch.output) and has_prefix(name, arch.output)


def is_decoder(model: torch.nn.Module) -> bool:
    """A causal language model (scored by its next-token logits), not an encoder with a task head."""
    return head_class(model) is Head.CAUSAL_LM


def head_names(model: torch.nn.Module) -> tuple[str, ...]:
    """The top-level module names of the task head."""
    return architecture(model).head
