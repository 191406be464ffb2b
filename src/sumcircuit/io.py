"""Atomic file writes, checksums, output checks and the cache directory.

Every file sumcircuit writes goes through these helpers so that an interrupted run never leaves
a half-written result behind: data is written to a temporary file in the same folder and then
renamed over the target (an atomic operation on POSIX file systems). A write that runs out of
disk space is one :class:`SumcircuitError` sentence (:func:`disk_full`), the old file intact.
:func:`check_writable_dir` checks an output directory before any work starts.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sumcircuit.errors import DiskFullError, SumcircuitError


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
        with disk_full(path):
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


#: What :func:`sampled_sha256` reads: the first and last ``EDGE`` bytes (the safetensors header
#: and the last tensors) and ``BLOCK`` bytes at every multiple of ``STRIDE`` in between.
SAMPLE_EDGE, SAMPLE_BLOCK, SAMPLE_STRIDE = 1 << 20, 1 << 12, 1 << 20


def sampled_sha256(path: str | Path) -> str:
    """sha256 of a file's size and of fixed samples of its bytes: the first and last MiB and
    4 KiB of every MiB. A cheap content check (under 1 % of a large file is read): damage of
    a MiB or more anywhere, or to many scattered bytes, changes it; a single flipped bit
    between samples does not (that takes :func:`sha256_file`)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    fd = os.open(path, os.O_RDONLY)
    try:
        if size <= 2 * SAMPLE_EDGE:
            offsets = [(0, size)]
        else:
            middle = range(SAMPLE_STRIDE, size - SAMPLE_EDGE, SAMPLE_STRIDE)
            offsets = [(0, SAMPLE_EDGE), *((o, SAMPLE_BLOCK) for o in middle)]
            offsets.append((size - SAMPLE_EDGE, SAMPLE_EDGE))
        for offset, length in offsets:
            digest.update(os.pread(fd, length, offset))
    finally:
        os.close(fd)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_hash(obj: Any) -> str:
    """Short content hash of a JSON-serialisable config (stable across runs and machines)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_disk_full(err: BaseException) -> bool:
    """An ``OSError`` with ``ENOSPC``/``EDQUOT``, or what torch (``RuntimeError: [enforce fail
    at inline_container.cc...]``) and safetensors (``SafetensorError: ... os error 28``) raise
    for one."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(err).lower()
    return any(
        sign in text
        for sign in (
            "no space left",
            "disk quota",
            "os error 28",
            "enforce fail at inline_container",
        )
    )


@contextmanager
def disk_full(path: str | Path, keeps: str = "") -> Iterator[None]:
    """Turn running out of disk space inside the block into one :class:`DiskFullError`
    sentence naming the file being written (``path``, or the inner block's) and what survives:
    ``keeps``, e.g. "the last checkpoint (step 40) is kept", replaces an inner block's."""
    try:
        yield
    except DiskFullError as err:
        if not keeps:
            raise
        raise DiskFullError(err.path, keeps) from err.__cause__
    except Exception as err:  # noqa: BLE001 - torch and safetensors have their own error types
        if not is_disk_full(err):
            raise
        raise DiskFullError(path, keeps) from err


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_writable_dir(path: str | Path, flag: str = "--out", need_bytes: int = 0) -> Path:
    """Check before any work starts that ``path`` can take a command's output: refuse a file,
    create and remove a temporary file in it (creating it and its parents for the test, and
    removing what was created, so that a command refused later has written nothing), and compare
    its disk's free space with ``need_bytes`` (an estimate). Returns the path; any problem is one
    :class:`SumcircuitError` naming ``flag``, the path and the fix."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SumcircuitError(
            f"{flag} {str(path)!r} is a file, not a directory; give a directory (it is created "
            "if missing)"
        )
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        _probe(path, flag, need_bytes)
    finally:
        for folder in created:  # deepest first; each is empty again
            with contextlib.suppress(OSError):
                folder.rmdir()
    return path


def _probe(path: Path, flag: str, need_bytes: int) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SumcircuitError(
            f"{flag} {str(path)!r} cannot be created ({err.strerror or err}); choose a writable "
            "directory"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".sumcircuit-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise SumcircuitError(
            f"{flag} {str(path)!r} is not writable ({err.strerror or err}); choose a writable "
            "directory"
        ) from None
    if need_bytes:
        free = shutil.disk_usage(path).free
        if free < need_bytes:
            raise SumcircuitError(
                f"{flag} {str(path)!r} has {_gib(free)} free but this needs about "
                f"{_gib(need_bytes)}; free space or choose another {flag}"
            )


def check_writable_file(path: str | Path, flag: str = "--out", need_bytes: int = 0) -> Path:
    """:func:`check_writable_dir` for an output file: refuses a directory, checks its folder."""
    path = Path(path)
    if path.is_dir():
        raise SumcircuitError(
            f"{flag} {str(path)!r} is a directory; give the path of the file to write"
        )
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise SumcircuitError(
            f"{flag} {str(path)!r} cannot be written: {str(blocker)!r} is a file, not a "
            "directory; choose another path"
        )
    check_writable_dir(path.parent, flag, need_bytes)
    return path
