"""Training checkpoints: trainable weights, optimizer, scheduler, RNG states and data position.

One checkpoint per run directory (``checkpoint.pt``, replaced atomically) plus a small
``checkpoint.json`` sidecar (config hash, step) that is read without loading the tensors.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sumcircuit.io import atomic_path, read_json, write_json

CHECKPOINT = "checkpoint.pt"
SIDECAR = "checkpoint.json"


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(directory: Path, state: dict[str, Any], info: dict[str, Any]) -> None:
    """Write ``state`` (torch.save) and ``info`` (JSON), each atomically; the sidecar last, so
    a sidecar always describes a complete checkpoint file."""
    with atomic_path(directory / CHECKPOINT) as tmp:
        torch.save(state, tmp)
    write_json(directory / SIDECAR, info)


def checkpoint_info(directory: Path) -> dict[str, Any] | None:
    path = directory / SIDECAR
    return read_json(path) if path.exists() and (directory / CHECKPOINT).exists() else None


def load_checkpoint(directory: Path) -> dict[str, Any]:
    return torch.load(directory / CHECKPOINT, map_location="cpu", weights_only=False)


def remove_checkpoint(directory: Path) -> None:
    for name in (SIDECAR, CHECKPOINT):
        (directory / name).unlink(missing_ok=True)
