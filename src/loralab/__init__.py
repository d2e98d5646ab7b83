"""loralab: fine-tune a pretrained transformer with a chosen strategy and measure what it costs and gives."""

__version__ = "0.1.0"
