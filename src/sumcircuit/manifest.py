"""What a folder of a run holds, and which of its files may be trusted.

A folder that sumcircuit wrote records a *manifest* in its marker ``stage.json``: the relative
path, size and sha256 of every file it wrote (:func:`file_manifest`). The study's stages write
one when they finish (:mod:`sumcircuit.study.stages`), and so does the summary step for the
report's own figures (``RUN/report``). A run directory is data, never code, and may have been
touched since: before a file it names is read, :func:`vouch` checks that it is a regular file
inside the run, reached without symlinks, and listed unchanged in the manifest of the folder that
wrote it. :func:`confinement_problem` is the first half alone, for a path that a result records
beside itself (an evaluation's predictions).

Below ``study/`` so that the report, which never imports the study, can check its figures.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from sumcircuit.io import read_json, write_json

__all__ = [
    "EDGE",
    "MARKER",
    "WHOLE_HASH_LIMIT",
    "confinement_problem",
    "file_digest",
    "file_manifest",
    "manifest_problem",
    "vouch",
    "write_manifest",
]

MARKER = "stage.json"
#: Files up to this size are hashed whole. Bigger ones (full-model weights, optimizer
#: checkpoints) are hashed by their size and the sha256 of their first and last :data:`EDGE`
#: bytes, so checking a finished training stage takes milliseconds instead of re-reading
#: gigabytes on every rerun. That sees truncation, a rewritten safetensors header and a changed
#: tail, not a same-size change in the middle of a weight file.
WHOLE_HASH_LIMIT = 50 << 20
EDGE = 1 << 20


def file_digest(path: Path, size: int | None = None) -> dict[str, Any]:
    """``{"size", "sha256"}`` of a file (the whole file up to :data:`WHOLE_HASH_LIMIT`), or
    ``{"size", "sha256_ends"}`` (its first and last :data:`EDGE` bytes) of a bigger one."""
    size = path.stat().st_size if size is None else size
    if size <= WHOLE_HASH_LIMIT:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        return {"size": size, "sha256": digest.hexdigest()}
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(EDGE))
        fh.seek(size - EDGE)
        digest.update(fh.read(EDGE))
    return {"size": size, "sha256_ends": digest.hexdigest()}


def file_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Relative path (POSIX) -> :func:`file_digest` of every regular file under ``folder``
    except the marker. A symlink is no file the folder wrote: it is left out (and ``rglob``
    does not descend into a symlinked folder)."""
    return {
        path.relative_to(folder).as_posix(): file_digest(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and not path.is_symlink()
        and path.relative_to(folder).as_posix() != MARKER
    }


def write_manifest(folder: Path, paths: list[Path], **extra: Any) -> Path:
    """Write ``folder/stage.json`` listing exactly ``paths`` (files under ``folder``), for a
    folder that is not a stage's but whose files are read later (the report's figures)."""
    files = {Path(p).relative_to(folder).as_posix(): file_digest(Path(p)) for p in paths}
    marker = folder / MARKER
    write_json(marker, {"files": dict(sorted(files.items()))} | extra)
    return marker


def manifest_problem(folder: Path, recorded: dict[str, dict[str, Any]]) -> str | None:
    """Why the files in ``folder`` no longer match ``recorded`` (the first difference), or
    None when every recorded file is there unchanged."""
    for name, want in sorted(recorded.items()):
        problem = confinement_problem(folder, name, missing="is missing")
        if problem is not None:
            return f"{name} {problem}"
        path = folder / name
        size = path.stat().st_size
        if size != want.get("size"):
            return f"{name} changed since it was written (size {want.get('size')} -> {size} bytes)"
        if file_digest(path, size) != want:
            return f"{name} changed since it was written (same size, different sha256)"
    return None


# -- reading a path a run or a result records ----------------------------------------------------
def confinement_problem(
    folder: Path, relative: Any, *, missing: str = "does not exist"
) -> str | None:
    """Why ``relative`` does not name a regular file inside ``folder`` reached without a
    symlink (a phrase: "is a symlink", "lies outside ..."), or None when it does. Symlinks
    above ``folder`` (a runs folder on another disk) are fine: only those inside count."""
    if not isinstance(relative, str) or not relative:
        return "is not a file name"
    rel = PurePosixPath(relative.replace("\\", "/"))
    if rel.is_absolute() or Path(relative).is_absolute():
        return f"is an absolute path, outside {str(folder)!r}"
    if ".." in rel.parts:
        return f"leaves {str(folder)!r} (it holds '..')"
    path = Path(folder)
    for i, part in enumerate(rel.parts):
        path = path / part
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return missing
        except OSError as err:
            return f"cannot be read ({err.strerror or type(err).__name__})"
        last = i == len(rel.parts) - 1
        if stat.S_ISLNK(mode):
            return (
                "is a symlink"
                if last
                else f"lies under the symlink {'/'.join(rel.parts[: i + 1])!r}"
            )
        if last and not stat.S_ISREG(mode):
            return "is not a regular file"
    if not path.resolve().is_relative_to(Path(folder).resolve()):  # belt and braces
        return f"resolves outside {str(folder)!r}"
    return None


def _stage_of(root: Path, rel: PurePosixPath) -> Path | None:
    """The nearest folder between ``root`` (excluded: the run itself is no stage) and the file
    ``rel`` that holds a marker."""
    for depth in range(len(rel.parts) - 1, 0, -1):
        folder = root.joinpath(*rel.parts[:depth])
        if (folder / MARKER).is_file() and not (folder / MARKER).is_symlink():
            return folder
    return None


def vouch(root: Path, relative: Any, data: bytes | None = None) -> str | None:
    """Why the file ``relative`` (to the run ``root``) may not be trusted (a phrase such as "is a
    symlink"), or None when it is a regular file inside the run, reached without symlinks, and
    listed with the same size and sha256 in the manifest of the folder that wrote it (the
    nearest one with a marker).
    ``data``: the file's bytes, when the caller has read them already (hashed instead of the
    file, so that what is checked is what is used)."""
    problem = confinement_problem(root, relative)
    if problem is not None:
        return problem
    rel = PurePosixPath(relative.replace("\\", "/"))
    folder = _stage_of(root, rel)
    if folder is None:
        return "was written by no stage of this run (no stage.json above it)"
    stage = folder.relative_to(root).as_posix()
    try:
        files = read_json(folder / MARKER).get("files")
    except (OSError, ValueError, AttributeError):
        return f"is vouched for by a damaged {stage}/stage.json"
    if not isinstance(files, dict):
        return f"is vouched for by a {stage}/stage.json that lists no files"
    want = files.get(rel.relative_to(folder.relative_to(root).as_posix()).as_posix())
    if not isinstance(want, dict):
        return f"is not listed in {stage}/stage.json (the {stage} stage did not write it)"
    if data is None:
        got = file_digest(root / rel)
    elif "sha256" in want:
        got = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    else:
        return "is too large to check"
    if got != want:
        return f"changed since the {stage} stage wrote it"
    return None
