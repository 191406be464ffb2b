"""The data types every stage consumes: :class:`Example` (one document/summary pair) and
:class:`Dataset` (named splits of examples plus where they came from and what was dropped).

Cleaning lives here too, so that every source drops the same things the same way: a pair whose
document or summary is empty or whitespace-only is dropped, counted in
``report["dropped_empty"]`` and logged — never silently. A document or summary must be text (a
string, or a list of strings such as CNN/DailyMail's highlights) and an id a string or a whole
number: a record whose document is an object or a number is refused in one sentence naming the
record and field, never trained on as the text ``"{'text': ...}"``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sumcircuit.errors import SumcircuitError

log = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One document and its reference summary.

    ``id`` is the source's own id when it has one, otherwise :func:`document_id` of the
    document, so the same document always gets the same id (and the same hash split).
    """

    id: str
    document: str
    summary: str


@dataclass
class Dataset:
    """One named dataset with its splits (``"train"``, ``"validation"``, ``"test"``).

    ``checksum`` is the sha256 of the raw source file (for several files: the sha256 of their
    sorted ``name sha256`` lines), ``source`` a human-readable origin, and ``report`` the counts
    of what loading did (``records``, ``kept``, ``dropped_empty``, ``non_utf8``, ...).
    """

    name: str
    splits: dict[str, list[Example]]
    checksum: str
    source: str
    report: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[Example]:
        """The examples of split ``name``; a clear error listing the splits if it is unknown."""
        if name in self.splits:
            return self.splits[name]
        if name in ("val", "valid", "dev") and "validation" in self.splits:
            return self.splits["validation"]
        raise SumcircuitError(
            f"dataset {self.name!r} has no split {name!r}; its splits are: "
            f"{', '.join(self.splits) or '(none)'}."
        )

    def sizes(self) -> dict[str, int]:
        """Number of examples per split."""
        return {name: len(examples) for name, examples in self.splits.items()}

    def __len__(self) -> int:
        return sum(len(examples) for examples in self.splits.values())

    def identity(self) -> dict[str, Any]:
        """``{name, checksum, source, sizes}`` — what provenance records about the data."""
        return {
            "name": self.name,
            "checksum": self.checksum,
            "source": self.source,
            "sizes": self.sizes(),
        }


def document_id(document: str) -> str:
    """A stable id for a document without one: the first 16 hex digits of its sha256."""
    return hashlib.sha256(document.encode("utf-8")).hexdigest()[:16]


def _kind(value: Any) -> str | None:
    """What a text field holds when it is not text (None: it is text, or empty)."""
    if value is None or isinstance(value, str) or (isinstance(value, float) and value != value):
        return None  # empty (None, or NaN from pandas/parquet): dropped as empty
    if isinstance(value, (list, tuple)):
        inner = next((v for v in value if not isinstance(v, str)), None)
        return None if inner is None else f"a list holding {_kind(inner) or 'an empty value'}"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def check_text(value: Any, where: str, field: str, *, is_id: bool = False) -> None:
    """Refuse a field value that is not text (see the module docstring); ``where`` names the
    record (``data.jsonl record 3``)."""
    if is_id and isinstance(value, int) and not isinstance(value, bool):
        return  # numeric ids are common (Hugging Face datasets)
    kind = _kind(value)
    if kind is None:
        return
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    fix = (
        "give ids as strings or whole numbers"
        if is_id
        else "give its text as a string (or a list of strings), or choose the field that holds "
        "the text with --document-field/--summary-field"
    )
    raise SumcircuitError(f"{where} field {field!r} is {kind} ({shown}), not text; {fix}.")


def _as_text(value: Any) -> str:
    """A field value as text: ``None`` (and float NaN from pandas/parquet) become ``""``."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):  # e.g. CNN/DailyMail-like lists of highlight sentences
        return "\n".join(_as_text(v) for v in value)
    return str(value)


def clean_examples(
    records: Iterable[tuple[Any, Any, Any]],
    *,
    origin: str,
    fields: tuple[str, str] = ("document", "summary"),
) -> tuple[list[Example], dict[str, Any]]:
    """Turn ``(id or None, document, summary)`` records into examples, dropping empty pairs;
    a field that is not text is an error naming the record and the field (``fields``: the
    source's names of the document and summary fields).

    Text is stripped of outer whitespace only (inner newlines are kept). Pairs whose document or
    summary is empty are dropped, counted and logged. Returns the examples and a report with
    ``records``, ``kept``, ``dropped_empty``, ``dropped_empty_ids`` (the first 20),
    ``duplicate_ids`` and ``non_utf8`` (always 0: undecodable input is an error, not a skip).
    """
    examples: list[Example] = []
    dropped: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    total = 0
    for raw_id, raw_doc, raw_sum in records:
        total += 1
        where = f"{origin} record {total}"
        check_text(raw_id, where, "id", is_id=True)
        check_text(raw_doc, where, fields[0])
        check_text(raw_sum, where, fields[1])
        document = _as_text(raw_doc).strip()
        summary = _as_text(raw_sum).strip()
        ex_id = _as_text(raw_id).strip() or document_id(document)
        if not document or not summary:
            dropped.append(ex_id)
            continue
        if ex_id in seen:
            duplicates += 1
        seen.add(ex_id)
        examples.append(Example(id=ex_id, document=document, summary=summary))
    if dropped:
        log.warning(
            "%s: dropped %d of %d pairs with an empty document or summary (ids: %s%s)",
            origin,
            len(dropped),
            total,
            ", ".join(dropped[:5]),
            ", ..." if len(dropped) > 5 else "",
        )
    if duplicates:
        log.warning("%s: %d examples share an id with an earlier example", origin, duplicates)
    report: dict[str, Any] = {
        "records": total,
        "kept": len(examples),
        "dropped_empty": len(dropped),
        "dropped_empty_ids": dropped[:20],
        "duplicate_ids": duplicates,
        "non_utf8": 0,
    }
    return examples, report
