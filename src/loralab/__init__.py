"""loralab: fine-tune a pretrained transformer with a chosen strategy and measure what it costs and gives.

The public API is `loralab.api` (`loralab.train`, `loralab.evaluate`, ... are the same functions, loaded on
first use so that `import loralab` and `loralab --help` stay fast); every setting is in `loralab.settings`.
"""

from loralab.version import __version__

_API = ("compare", "evaluate", "export_peft", "generate", "intrinsic_dimension", "load_run", "merge", "predict", "recommend", "report",
        "sweep", "train")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from loralab import api

        return getattr(api, name)
    raise AttributeError(f"module 'loralab' has no attribute {name!r}")
