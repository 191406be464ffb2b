"""The hf: source, offline: a fake ``datasets`` module stands in for Hugging Face."""

from __future__ import annotations

import sys
import types

import pytest

from sumcircuit.data import load_dataset
from sumcircuit.errors import SumcircuitError


class FakeSplit:
    def __init__(self, columns: dict[str, list], fingerprint: str) -> None:
        self._columns = columns
        self._fingerprint = fingerprint

    @property
    def column_names(self) -> list[str]:
        return list(self._columns)

    def __len__(self) -> int:
        return len(next(iter(self._columns.values())))

    def __getitem__(self, key: str) -> list:
        return self._columns[key]


def _install(monkeypatch: pytest.MonkeyPatch, loader) -> list:
    calls: list = []
    module = types.ModuleType("datasets")

    def load(name, config=None):
        calls.append((name, config))
        return loader(name, config)

    module.load_dataset = load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def _cnn(n: int, fp: str) -> FakeSplit:
    return FakeSplit(
        {
            "article": [f"article {fp} {i}" for i in range(n)],
            "highlights": [f"line one {i}\nline two" for i in range(n)],
            "id": [f"{fp}{i}" for i in range(n)],
        },
        fp,
    )


def test_hf_cnn_defaults_and_own_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _install(
        monkeypatch,
        lambda name, config: {
            "train": _cnn(5, "tr"),
            "validation": _cnn(2, "va"),
            "test": _cnn(3, "te"),
        },
    )
    ds = load_dataset("hf:cnn_dailymail")
    assert calls == [("cnn_dailymail", "3.0.0")]
    assert ds.name == "cnn_dailymail:3.0.0"
    assert ds.sizes() == {"train": 5, "validation": 2, "test": 3}
    assert ds.report["split_method"] == "source"
    assert ds.report["fields"] == ["article", "highlights"]
    assert ds.split("validation")[1].summary == "line one 1\nline two"
    assert ds.split("train")[0].id == "tr0"
    assert len(ds.checksum) == 64


def test_hf_single_split_is_hash_split(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, lambda name, config: {"train": _cnn(50, "x"), "extra": _cnn(1, "y")})
    ds = load_dataset("hf:someone/data", document_field="article", summary_field="highlights")
    assert ds.report["split_method"] == "hash"
    assert len(ds) == 50


def test_hf_missing_field(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, lambda name, config: {"train": _cnn(3, "x")})
    with pytest.raises(
        SumcircuitError, match="no field 'document'; fields found: article, highlights, id"
    ):
        load_dataset("hf:someone/data")


def test_hf_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name, config):
        raise ConnectionError("Couldn't reach 'EdinburghNLP/xsum' on the Hub")

    _install(monkeypatch, fail)
    with pytest.raises(
        SumcircuitError, match="could not load Hugging Face dataset EdinburghNLP/xsum.*reachable"
    ):
        load_dataset("hf:EdinburghNLP/xsum")


def test_hf_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(SumcircuitError, match=r'pip install "sumcircuit\[hf\]"'):
        load_dataset("hf:EdinburghNLP/xsum")
