"""Local dataset files: readers for ``.jsonl``, ``.json``, ``.csv`` and ``.parquet``.

A file holds records with ``document_field``/``summary_field`` columns and optional ``id`` and
``split`` columns (a ``split`` column on every record is used as the split); ``.json`` is a list
of objects, or ``{"train": [...], ...}``. :func:`load_local` turns one file into a
:class:`~sumcircuit.data.examples.Dataset`; a malformed file gets one sentence naming the file,
the line and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sumcircuit.data.build import build_dataset, label_records, record_triples
from sumcircuit.data.examples import Dataset
from sumcircuit.data.splits import canonical_split_name
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import sha256_file

LOCAL_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".parquet")


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as err:
        raise SumcircuitError(
            f"{path} line {lineno} is not valid UTF-8 (byte {err.start + 1} of the line); "
            "re-encode the file as UTF-8."
        ) from None


def _decode_file(path: Path) -> str:
    """The whole file as text; a non-UTF-8 byte is reported with its line number."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        lineno = data.count(b"\n", 0, err.start) + 1
        raise SumcircuitError(
            f"{path} line {lineno} is not valid UTF-8; re-encode the file as UTF-8."
        ) from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            text = _decode(raw, path, lineno)
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise SumcircuitError(
                    f"{path} line {lineno} is not valid JSON ({err.msg}); each line must be one "
                    "JSON object."
                ) from None
            except RecursionError:
                raise SumcircuitError(_too_deep(path, f" line {lineno}")) from None
            if not isinstance(obj, dict):
                raise SumcircuitError(
                    f"{path} line {lineno} is a JSON {type(obj).__name__}, not an object with "
                    "document and summary fields."
                )
            yield lineno, obj


def _read_json(path: Path) -> list[dict[str, Any]]:
    """A JSON list of objects, or ``{"train": [...], "validation": [...], ...}``.

    With the second form each record gets a ``split`` key from its list's name.
    """
    text = _decode_file(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise SumcircuitError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno})."
        ) from None
    except RecursionError:
        raise SumcircuitError(_too_deep(path, "")) from None
    if isinstance(obj, dict) and obj and all(canonical_split_name(k) for k in obj):
        records = []
        for split, items in obj.items():
            for item in _object_list(items, path):
                records.append({**item, "split": split})
        return records
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    return _object_list(obj, path)


def _too_deep(path: Path, where: str) -> str:
    """The message for JSON nested deeper than Python's parser recurses (thousands of levels):
    no document/summary record is shaped like that."""
    return (
        f"{path}{where} nests JSON arrays or objects too deeply to read; a record is one object "
        "of document and summary strings."
    )


def _object_list(obj: Any, path: Path) -> list[dict[str, Any]]:
    if not isinstance(obj, list) or not all(isinstance(item, dict) for item in obj):
        raise SumcircuitError(
            f"{path} must hold a JSON list of objects (or {{split name: list of objects}})."
        )
    return obj


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as fh:
        lines = [_decode(raw, path, lineno) for lineno, raw in enumerate(fh, 1)]
    reader = csv.DictReader(io.StringIO("".join(lines), newline=""))
    if not reader.fieldnames:
        raise SumcircuitError(f"{path} is empty; a CSV file needs a header row naming its columns.")
    return list(reader)


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq  # lazy: pyarrow is heavy

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises many types; say which file and why
        raise SumcircuitError(f"could not read {path} as Parquet: {err}") from None


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a local file, read by its extension."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [obj for _, obj in read_jsonl(path)]
    readers: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
        ".json": _read_json,
        ".csv": _read_csv,
        ".parquet": _read_parquet,
    }
    if suffix not in readers:
        raise SumcircuitError(
            f"{path} has an unsupported extension {suffix or '(none)'}; use one of "
            f"{', '.join(LOCAL_SUFFIXES)}."
        )
    return readers[suffix](path)


def load_local(path: Path, document_field: str, summary_field: str) -> Dataset:
    """A local file as a cleaned, split :class:`Dataset`."""
    if not path.is_file():
        raise SumcircuitError(f"dataset file {path} does not exist.")
    origin = str(path)
    groups = label_records(read_records(path), origin)
    labelled = {
        split: record_triples(records, document_field, summary_field, origin)
        for split, records in groups.items()
    }
    return build_dataset(
        path.name,
        labelled,
        checksum=sha256_file(path),
        source=str(path.resolve()),
        origin=origin,
        fields=(document_field, summary_field),
    )
