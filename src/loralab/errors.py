"""User-facing errors: the CLI prints these as one clear message and exits non-zero, no traceback."""


class LoralabError(Exception):
    """A problem with the user's input (a file, a flag, a run folder), not a bug in loralab.

    The message is kept to one line (a parser's multi-line message is folded), since the CLI
    promises one line on stderr.
    """

    def __init__(self, message: str = ""):
        super().__init__(" ".join(str(message).split()))
