"""Training checkpoints: trainable weights, optimizer, scheduler, RNG states and data position.

One checkpoint per run directory, and no pickle: run directories are shared between people and
machines, and unpickling a file can run any code in it. ``checkpoint.safetensors`` holds every
tensor (weights, optimizer moments, the torch RNG state) and, in its string metadata, the JSON
structure of the rest (scheduler, progress, Python and NumPy RNG states) with references to the
tensors. safetensors and json never execute what they read. A small ``checkpoint.json`` sidecar
(config hash, step) is read without loading the tensors and is written last, so a sidecar always
describes a complete checkpoint file; the checkpoint file carries a copy of its sidecar, so a
sidecar that does not belong to it (edited, or copied from another run) is refused, and so is a
checkpoint whose tensors do not fit the run resuming it (:func:`restoring`) — each one sentence
naming the file, never a traceback. A ``checkpoint.pt`` pickle left by an older version is
refused, never loaded.

The structure encoding is written here because neither safetensors (flat tensor dicts only) nor
json (no tensors, tuples or non-string keys) carries an optimizer's state dict on its own.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import atomic_path, read_json, write_json

CHECKPOINT = "checkpoint.safetensors"
SIDECAR = "checkpoint.json"
LEGACY_PICKLE = "checkpoint.pt"
_STRUCTURE = "structure"  # safetensors metadata key holding the JSON structure
_INFO = "sidecar"  # safetensors metadata key holding a copy of the sidecar


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


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` as JSON-able data; tensors move into ``tensors`` and are referenced by key."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(x, tensors) for x in obj]}
    if isinstance(obj, list):
        return [_encode(x, tensors) for x in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _encode(v, tensors) for k, v in obj.items()}}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"a checkpoint cannot hold a {type(obj).__name__}")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(x, tensors) for x in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(_decode(x, tensors) for x in obj["__tuple__"])
    if "__dict__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__dict__"].items()}
    if "__items__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    raise ValueError(f"unknown entry {sorted(obj)[:3]}")


def save_checkpoint(directory: Path, state: dict[str, Any], info: dict[str, Any]) -> None:
    """Write ``state`` (safetensors + JSON structure) and ``info`` (JSON), each atomically; the
    sidecar last. A legacy pickle checkpoint in ``directory`` is removed."""
    tensors: dict[str, torch.Tensor] = {}
    structure = json.dumps(_encode(state, tensors))
    with atomic_path(directory / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp), metadata={_STRUCTURE: structure, _INFO: json.dumps(info)})
    (directory / LEGACY_PICKLE).unlink(missing_ok=True)
    write_json(directory / SIDECAR, info)


def checkpoint_info(directory: Path) -> dict[str, Any] | None:
    """The sidecar of a checkpoint in ``directory``, or None if there is none.

    Raises when only a legacy pickle checkpoint is there: it must not be loaded, and silently
    starting over would throw away the user's training without a word.
    """
    if (directory / LEGACY_PICKLE).exists() and not (directory / CHECKPOINT).exists():
        raise SumcircuitError(
            f"{directory / LEGACY_PICKLE} is a pickle checkpoint (an older sumcircuit, or not "
            "sumcircuit's); it is not loaded because unpickling can run code. Delete it to start "
            "this run over"
        )
    path = directory / SIDECAR
    if not (path.exists() and (directory / CHECKPOINT).exists()):
        return None
    try:
        info = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _damaged(directory, path, err) from None
    if not isinstance(info, dict) or not isinstance(info.get("step"), int):
        raise _damaged(directory, path, "no step recorded")
    if not isinstance(info.get("config_hash"), str):
        raise _damaged(directory, path, "no config hash recorded")
    return info


def load_checkpoint(directory: Path) -> dict[str, Any]:
    """The state saved by :func:`save_checkpoint`; a damaged file, or one its sidecar does not
    describe, is one clear error."""
    path = directory / CHECKPOINT
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
            metadata = f.metadata() or {}
        state = _decode(json.loads(metadata[_STRUCTURE]), tensors)
        own = json.loads(metadata[_INFO]) if _INFO in metadata else None
    except (OSError, SafetensorError, KeyError, ValueError, TypeError) as err:
        raise _damaged(directory, path, err) from None
    sidecar = checkpoint_info(directory)
    if own is not None and own != sidecar:  # older checkpoints carry no copy
        raise SumcircuitError(
            f"the checkpoint sidecar {directory / SIDECAR} does not describe {path} (it says "
            f"{sidecar}, the checkpoint was written with {own}); delete both to start this run "
            "over"
        )
    return state


def restore_trainable(
    directory: Path, saved: dict[str, torch.Tensor], trainable: dict[str, torch.Tensor]
) -> None:
    """Copy the checkpoint's trainable tensors into ``trainable`` (the run's parameters by
    name), refusing a checkpoint whose names or shapes are not the run's."""
    if not isinstance(saved, dict):
        raise _damaged(directory, directory / CHECKPOINT, "no trainable tensors")
    want = {n: tuple(p.shape) for n, p in trainable.items()}
    have = {n: tuple(t.shape) for n, t in saved.items() if isinstance(t, torch.Tensor)}
    if have != want:
        odd = sorted(set(have.items()) ^ set(want.items()))[:2]
        raise _damaged(
            directory,
            directory / CHECKPOINT,
            f"its trainable tensors are not this run's, e.g. {odd}",
        )
    with torch.no_grad():
        for name, value in saved.items():
            trainable[name].copy_(value)


@contextmanager
def restoring(directory: Path) -> Iterator[None]:
    """Turn an error while a loaded checkpoint's state is applied (an optimizer, scheduler or
    progress record that does not fit this run) into one sentence naming the file."""
    try:
        yield
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
        raise _damaged(
            directory, directory / CHECKPOINT, f"it does not fit this run: {err}"
        ) from None


def remove_checkpoint(directory: Path) -> None:
    for name in (SIDECAR, CHECKPOINT, LEGACY_PICKLE):
        (directory / name).unlink(missing_ok=True)


def _damaged(directory: Path, path: Path, why: object) -> SumcircuitError:
    return SumcircuitError(
        f"the checkpoint {path} is damaged ({why}); delete {directory / SIDECAR} and {path} to "
        "start this run over"
    )
