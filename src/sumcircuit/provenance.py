"""Provenance recorded in every output: versions, git hash, model and data identity, config."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import sumcircuit

_PACKAGES = ("torch", "transformers", "peft", "accelerate", "rouge-score", "numpy")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_hash() -> str | None:
    """The commit of the sumcircuit source tree, or None when not run from a git checkout."""
    src = Path(sumcircuit.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(
    config: Any = None,
    *,
    models: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """A JSON-ready record of everything needed to reproduce an output."""
    if is_dataclass(config) and not isinstance(config, type):
        config = asdict(config)
    return {
        "sumcircuit": sumcircuit.__version__,
        "git": git_hash(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "models": models or {},
        "data": data or {},
        "seed": seed,
        "config": config,
    }
