"""One ``sumcircuit run`` per run directory at a time.

:func:`run_lock` holds an exclusive ``flock`` on the directory's lock file
(:attr:`~sumcircuit.layout.RunLayout.lock_file`) for as long as the run works there, and writes
the holder's pid, host and start time into it for the message a second run gets. The kernel
drops the lock when its process ends, however it ends, so a lock file left by a killed or
crashed run (a dead pid) is free: the next run takes it over with one log line. A run that
finishes removes the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sumcircuit.errors import SumcircuitError
from sumcircuit.layout import RunLayout

log = logging.getLogger(__name__)

__all__ = ["run_lock"]


def _holder(fd: int) -> dict[str, Any]:
    """What the lock file says about the run that wrote it (empty when it says nothing)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    started = holder.get("started")
    when = (
        f", started {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}"
        if isinstance(started, (int, float))
        else ""
    )
    return f"pid {pid} on {host}{when}"


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive lock; refuse a live holder."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise SumcircuitError(
                f"{str(path.parent)!r} is in use by another sumcircuit run ({_describe(holder)}); "
                "wait for it to finish or stop it, or choose another --out"
            ) from None
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # the previous holder removed it as it finished
            same = False
        if same:
            return fd
        os.close(fd)  # we locked a file that is no longer the lock file: take the new one


@contextlib.contextmanager
def run_lock(layout: RunLayout) -> Iterator[None]:
    """Hold ``layout``'s lock file while the block runs (see the module docstring).

    Creates the run directory if missing; when the block fails and leaves that new directory
    empty, it is removed again, so a refused start writes nothing."""
    root = layout.root
    created = [p for p in (root, *root.parents) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    path = layout.lock_file
    try:
        fd = _acquire(path)
    except BaseException:
        _remove_empty(created)
        raise
    previous = _holder(fd)
    if previous:  # its process is gone: the kernel freed the lock when it ended
        log.warning(
            "taking over %s of a run that is no longer alive (%s)", path, _describe(previous)
        )
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a run waiting on the old file retries
        os.close(fd)
        _remove_empty(created)


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders :func:`run_lock` created, deepest first, while they are empty."""
    for folder in created:
        with contextlib.suppress(OSError):
            folder.rmdir()
