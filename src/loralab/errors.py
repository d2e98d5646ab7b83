"""User-facing errors: the CLI prints these as one clear message and exits non-zero, no traceback."""


class LoralabError(Exception):
    """A problem with the user's input (a file, a flag, a run folder), not a bug in loralab."""
