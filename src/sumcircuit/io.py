"""Atomic file writes, checksums and the cache directory.

Every file sumcircuit writes goes through these helpers so that an interrupted run never leaves
a half-written result behind: data is written to a temporary file in the same folder and then
renamed over the target (an atomic operation on POSIX file systems).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def cache_dir(*parts: str) -> Path:
    """``$SUMCIRCUIT_CACHE`` (default ``~/.cache/sumcircuit``) joined with ``parts``, created."""
    root = Path(os.environ.get("SUMCIRCUIT_CACHE", Path.home() / ".cache" / "sumcircuit"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are meant to be shared
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def share_files(directory: str | Path) -> None:
    """Give the files directly in ``directory`` the mode ``atomic_path`` gives (0644): libraries
    such as safetensors' ``save_pretrained`` write weights 0600."""
    for path in Path(directory).iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o644)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_hash(obj: Any) -> str:
    """Short content hash of a JSON-serialisable config (stable across runs and machines)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
