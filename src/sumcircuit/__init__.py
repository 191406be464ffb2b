"""sumcircuit: where a GPT-like model learns to summarize, and cheaper fine-tuning from it."""

__version__ = "0.1.0"
