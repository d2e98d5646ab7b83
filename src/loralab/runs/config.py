"""The configuration of one run lives with every other setting, in `loralab.settings`; this name stays
for code written against it."""

from loralab.settings.run import SETTINGS, RunConfig

__all__ = ["RunConfig", "SETTINGS"]
