"""How the base model is stored: which model, its frozen weights in half precision (`--base-dtype`) or in
fewer bits (QLoRA)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from loralab.settings.table import setting
from loralab.errors import LoralabError
from loralab.validate import SettingError

DEFAULT_MODEL = "minilm"  # the packaged sentence-transformers/all-MiniLM-L6-v2
COMPUTE_DTYPE_NAMES = ("float32", "bfloat16", "float16")
# Strategies that train every base weight (or move it through a subspace): their base cannot be half.
_WHOLE_BASE = {"full": "full fine-tuning trains every base weight, which keeps float32 master weights",
               "galore": "GaLore trains every base weight, which keeps float32 master weights",
               "subspace": "the random subspace adds its small update P theta to every base weight, which a half "
                           "weight would round away"}


def base_dtype_setting():
    """`RunConfig.base_dtype`, declared here with the rest of how the base is stored."""
    return setting("float32", "Store the frozen base weights (linear and embedding matrices) in bfloat16 or float16: "
                   "half the memory; what trains stays float32, and with --precision bf16 the products run in bf16.",
                   folder="base", label="base dtype", choices=COMPUTE_DTYPE_NAMES)


def check_base_dtype(base_dtype: str, strategy: str, quantize: "QuantizeConfig") -> None:
    """Refuse a half base where it makes no sense, in one line."""
    if base_dtype not in COMPUTE_DTYPE_NAMES:
        raise SettingError("base_dtype", base_dtype, "one of " + ", ".join(COMPUTE_DTYPE_NAMES))
    if base_dtype == "float32":
        return
    if strategy in _WHOLE_BASE:
        raise LoralabError(f"--base-dtype {base_dtype} with --strategy {strategy}: {_WHOLE_BASE[strategy]} "
                           "(use lora, attention or qv)")
    if quantize.enabled:
        raise LoralabError(f"--base-dtype {base_dtype} with --quantize {quantize.method}: the quantized base already "
                           "stores its weights in fewer bits (its products' dtype is --compute-dtype)")


class Method(enum.Enum):
    NONE = "none"
    NF4 = "nf4"
    FP4 = "fp4"
    INT8 = "int8"

    @property
    def four_bit(self) -> bool:
        return self in (Method.NF4, Method.FP4)


@dataclass(frozen=True)
class QuantizeConfig:
    """How the frozen base weights are stored."""

    method: str = setting("none", "Store the frozen base linear weights in 4 or 8 bits (bitsandbytes): none, nf4 "
                          "(4-bit NormalFloat; lora on nf4 is QLoRA), fp4 or int8.", key="quantize", folder="quantize",
                          choices=tuple(m.value for m in Method))
    double_quant: bool = setting(False, "4-bit only: quantize the block scales too (QLoRA's double quantization).")
    compute_dtype: str = setting("float32", "4-bit only: the dtype each product dequantizes the weight to.",
                                 choices=COMPUTE_DTYPE_NAMES)

    def __post_init__(self):
        try:
            method = Method(self.method)
        except ValueError:
            raise SettingError("quantize.method", self.method, "one of " + ", ".join(m.value for m in Method)) from None
        if not isinstance(self.double_quant, bool):
            raise SettingError("quantize.double_quant", self.double_quant, "true or false")
        if self.compute_dtype not in COMPUTE_DTYPE_NAMES:
            raise SettingError("quantize.compute_dtype", self.compute_dtype, "one of " + ", ".join(COMPUTE_DTYPE_NAMES))
        if not method.four_bit and self.double_quant:
            raise SettingError("quantize.double_quant", self.double_quant, f"false with {self.method} (4-bit only)")
        if not method.four_bit and self.compute_dtype != "float32":
            raise SettingError("quantize.compute_dtype", self.compute_dtype, f"float32 with {self.method} (4-bit only)")

    @property
    def enabled(self) -> bool:
        return self.method != Method.NONE.value
