"""Pretrained models: the architecture table, loading, fingerprints, and what runs a model faster or smaller.

| module | holds |
|---|---|
| `architectures.py` | the one table of architecture knowledge (projection names, heads, packed layout) |
| `loading.py` | models and tokenizers from a local folder, a packaged model or the hub |
| `packaged.py` | the packaged models (`cache.py`, `gguf.py`, `mpnet.py` assemble them) |
| `fingerprint.py` | a base model's fingerprint and parameter counts |
| `head_start.py` | where a task head starts: its output bias, untrained poolers that train with it |
| `packed.py`, `packed_decoder.py` | forwards on a batch's real tokens only |
| `checkpointing.py` | gradient checkpointing of a model's repeated blocks |
| `quantize.py` | a 4- or 8-bit frozen base (QLoRA) |
| `half.py` | a frozen base in bfloat16 / float16 (`--base-dtype`), cast at the product |

The names below are re-exported for callers outside this package.
"""

from loralab.models.architectures import (ARCHITECTURES, DECODER_TYPES, ROLES, Architecture, Head, Layer, Packed,
                                          architecture, head_class, head_names, is_decoder, is_head, is_linear,
                                          is_output)
from loralab.models.fingerprint import count_parameters, fingerprint
from loralab.models.half import float_base, half_base
from loralab.models.loading import (DEFAULT_MODEL, load_model, load_tokenizer, model_type, offline_environment,
                                    pad_token_id, position_limit, recorded_model, resolve_model)

__all__ = ["ARCHITECTURES", "DECODER_TYPES", "DEFAULT_MODEL", "ROLES", "Architecture", "Head", "Layer", "Packed",
           "architecture", "count_parameters", "fingerprint", "float_base", "half_base", "head_class", "head_names", "is_decoder", "is_head",
           "is_linear", "is_output", "load_model", "load_tokenizer", "model_type", "offline_environment",
           "pad_token_id", "position_limit", "recorded_model", "resolve_model"]
