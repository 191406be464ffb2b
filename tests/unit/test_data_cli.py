"""``sumcircuit data list | fetch | show`` through ``cli.main`` (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sumcircuit.cli import main


def test_data_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "size", "licence", "fetched", "description"]
    for name in ("xsum", "multilexsum", "aclsum"):
        assert name in out
    assert " no " in out


def test_data_show_local_words_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    def unavailable(name: str):
        raise OSError("no tokenizer here")

    monkeypatch.setattr("sumcircuit.models.load_tokenizer", unavailable)
    path = tmp_path / "p.jsonl"
    rows = [
        {"id": str(i), "body": "word " * (i + 1) + "x" * 400, "tldr": "two words"}
        for i in range(20)
    ]
    rows.append({"id": "empty", "body": " ", "tldr": "s"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code = main(["data", "show", str(path), "--document-field", "body", "--summary-field", "tldr"])
    assert code == 0
    out = capsys.readouterr().out
    assert "(words; tokenizer unavailable)" in out
    assert "dropped empty 1" in out
    assert "summary   mean 2.0  median 2  p95 2  max 2" in out
    assert "document  mean 11.5  median 12  p95 20  max 21" in out
    assert out.count("\nexample ") == 2
    assert all(len(line) < 320 for line in out.splitlines())


def test_data_show_with_tokenizer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    class CharTokenizer:
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [list(t) for t in texts]}

    monkeypatch.setattr("sumcircuit.models.load_tokenizer", lambda name: CharTokenizer())
    path = tmp_path / "p.csv"
    path.write_text("document,summary\nabcd,ab\nabcdef,abc\n", encoding="utf-8")
    assert main(["data", "show", str(path), "--model", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "lengths (tiny tokens)" in out
    assert "summary   mean 2.5" in out


def test_data_errors_are_one_line(capsys) -> None:
    assert main(["data", "show", "no-such-dataset"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset 'no-such-dataset'")
    assert len(err.strip().splitlines()) == 1
