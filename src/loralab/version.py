"""loralab's version, apart so that any module can name it without importing the API."""

__version__ = "0.1.0"
