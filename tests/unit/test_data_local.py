"""Loading local JSONL / JSON / CSV / Parquet files: fields, errors, cleaning, splits."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from sumcircuit.data import Dataset, Example, assign_split, document_id, load_dataset
from sumcircuit.errors import SumcircuitError

ROWS = [
    {"id": f"r{i}", "text": f"document number {i} .", "abstract": f"summary {i}"} for i in range(40)
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _check(ds: Dataset, n: int = 40) -> None:
    assert set(ds.splits) == {"train", "validation", "test"}
    assert len(ds) == n
    for split, examples in ds.splits.items():
        for ex in examples:
            assert assign_split(ex.id) == split
            assert ex.document == f"document number {ex.id[1:]} ."
            assert ex.summary == f"summary {ex.id[1:]}"
    assert ds.report["dropped_empty"] == 0
    assert ds.report["split_method"] == "hash"
    assert len(ds.checksum) == 64


@pytest.mark.parametrize(
    "suffix,writer",
    [(".jsonl", _write_jsonl), (".csv", _write_csv), (".parquet", _write_parquet)],
)
def test_local_formats_with_custom_fields(tmp_path: Path, suffix: str, writer) -> None:
    path = writer(tmp_path / f"pairs{suffix}", ROWS)
    ds = load_dataset(str(path), document_field="text", summary_field="abstract")
    _check(ds)
    assert ds.identity() == {
        "name": f"pairs{suffix}",
        "checksum": ds.checksum,
        "source": str(path.resolve()),
        "sizes": ds.sizes(),
    }


def test_json_list_and_split_dict(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    _check(load_dataset(str(path), document_field="text", summary_field="abstract"))

    path.write_text(json.dumps({"train": ROWS[:30], "val": ROWS[30:35], "test": ROWS[35:]}))
    ds = load_dataset(str(path), document_field="text", summary_field="abstract")
    assert ds.sizes() == {"train": 30, "validation": 5, "test": 5}
    assert ds.report["split_method"] == "source"
    assert ds.split("val") is ds.split("validation")


def test_split_column_is_used(tmp_path: Path) -> None:
    rows = [{**r, "split": "dev" if i % 4 == 0 else "train"} for i, r in enumerate(ROWS)]
    ds = load_dataset(
        str(_write_jsonl(tmp_path / "s.jsonl", rows)),
        document_field="text",
        summary_field="abstract",
    )
    assert ds.sizes() == {"train": 30, "validation": 10}
    rows[3]["split"] = "holdout"
    with pytest.raises(SumcircuitError, match="'holdout'"):
        load_dataset(
            str(_write_jsonl(tmp_path / "s.jsonl", rows)),
            document_field="text",
            summary_field="abstract",
        )


def test_missing_field_names_field_and_fields_found(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    with pytest.raises(SumcircuitError) as err:
        load_dataset(str(path))  # default fields document/summary are absent
    message = str(err.value)
    assert "'document'" in message
    assert "fields found: id, text, abstract" in message
    assert "--document-field" in message

    csv_path = _write_csv(tmp_path / "pairs.csv", ROWS)
    with pytest.raises(
        SumcircuitError, match="no field 'summary'.*fields found: id, text, abstract"
    ):
        load_dataset(str(csv_path), document_field="text")


def test_non_utf8_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"document": "d", "summary": "s"}).encode() + b"\n"
    path.write_bytes(good + good + b'{"document": "caf\xe9", "summary": "s"}\n' + good)
    with pytest.raises(SumcircuitError) as err:
        load_dataset(str(path))
    assert str(path) in str(err.value)
    assert "line 3" in str(err.value)
    assert "UTF-8" in str(err.value)

    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(b"document,summary\nd,s\nd2,\xff\xfe\n")
    with pytest.raises(SumcircuitError, match=r"bad\.csv line 3 is not valid UTF-8"):
        load_dataset(str(csv_path))

    json_path = tmp_path / "bad.json"
    json_path.write_bytes(b'[\n{"document": "d",\n "summary": "\xe9"}]')
    with pytest.raises(SumcircuitError, match=r"bad\.json line 3 is not valid UTF-8"):
        load_dataset(str(json_path))


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"document": "d", "summary": "s"}\n{"document": \n', encoding="utf-8")
    with pytest.raises(SumcircuitError, match="line 2 is not valid JSON"):
        load_dataset(str(path))


def test_empty_pairs_dropped_counted_and_logged(tmp_path: Path, caplog) -> None:
    rows = [
        {"id": "a", "document": "text a", "summary": "sum a"},
        {"id": "b", "document": "", "summary": "sum b"},
        {"id": "c", "document": "text c", "summary": "   \n "},
        {"id": "d", "document": None, "summary": "sum d"},
        {"id": "e", "document": "  text e  ", "summary": "sum e"},
    ]
    path = _write_jsonl(tmp_path / "e.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="sumcircuit"):
        ds = load_dataset(str(path))
    assert ds.report["records"] == 5
    assert ds.report["kept"] == 2
    assert ds.report["dropped_empty"] == 3
    assert ds.report["dropped_empty_ids"] == ["b", "c", "d"]
    assert ds.report["non_utf8"] == 0
    assert "dropped 3 of 5" in caplog.text
    kept = sorted((ex for split in ds.splits.values() for ex in split), key=lambda e: e.id)
    assert kept == [Example("a", "text a", "sum a"), Example("e", "text e", "sum e")]


def test_missing_id_uses_document_hash(tmp_path: Path) -> None:
    rows = [{"document": f"doc {i}", "summary": f"s {i}"} for i in range(5)]
    ds = load_dataset(str(_write_jsonl(tmp_path / "noid.jsonl", rows)))
    ids = {ex.id for split in ds.splits.values() for ex in split}
    assert ids == {document_id(f"doc {i}") for i in range(5)}
    assert all(len(i) == 16 for i in ids)


def test_unknown_split_lists_splits(tmp_path: Path) -> None:
    ds = load_dataset(
        str(_write_jsonl(tmp_path / "p.jsonl", ROWS)),
        document_field="text",
        summary_field="abstract",
    )
    with pytest.raises(
        SumcircuitError, match="no split 'dev2'; its splits are: train, validation, test"
    ):
        ds.split("dev2")


def test_unknown_name_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SumcircuitError) as err:
        load_dataset("no-such-dataset")
    message = str(err.value)
    for word in ("xsum", "multilexsum", "aclsum", ".jsonl", ".parquet", "hf:NAME"):
        assert word in message
    with pytest.raises(SumcircuitError, match="does not exist"):
        load_dataset(str(tmp_path / "absent.jsonl"))
