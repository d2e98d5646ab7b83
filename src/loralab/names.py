"""Module and parameter names are dot-separated paths (`bert.encoder.layer.0.attention.self.query`).

A name matches a prefix or suffix only on a dot boundary: `classifier` is a prefix of
`classifier.weight` but not of `classifier2.weight`, and `query` is a suffix of `self.query` but not
of `self.key_query`. Every strategy, the architecture table and the peft translation match names
through these two functions.
"""

from __future__ import annotations


def has_prefix(name: str, prefix: str) -> bool:
    """True when `name` is `prefix` or lies below it (`prefix.<...>`)."""
    return name == prefix or name.startswith(prefix + ".")


def has_suffix(name: str, suffix: str) -> bool:
    """True when `name` is `suffix` or ends with it after a dot (`<...>.suffix`)."""
    return name == suffix or name.endswith("." + suffix)
