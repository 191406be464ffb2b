"""Models: offline presets, loading with a safetensors cache, and the architecture table."""

from sumcircuit.models.archs import ARCHS, Arch, ArchSpec
from sumcircuit.models.loader import (
    LoadedModel,
    default_device,
    fetch_model,
    load_model,
    load_tokenizer,
)
from sumcircuit.models.registry import DEFAULT_MODEL, PRESETS, Preset, resolve

__all__ = [
    "ARCHS",
    "Arch",
    "ArchSpec",
    "DEFAULT_MODEL",
    "LoadedModel",
    "PRESETS",
    "Preset",
    "default_device",
    "fetch_model",
    "load_model",
    "load_tokenizer",
    "resolve",
]
