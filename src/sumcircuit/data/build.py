"""From raw records to a :class:`~sumcircuit.data.examples.Dataset`, whatever the source.

Every source (packaged, local file, Hugging Face) hands over ``(id, document, summary)`` triples,
grouped by the source's own split or not at all; :func:`build_dataset` cleans them (empty pairs
dropped and counted) and splits them — by the source's labels, or by hashed id when it has none.
"""

from __future__ import annotations

import logging
from typing import Any

from sumcircuit.data.examples import SPLIT_NAMES, Dataset, Example, clean_examples
from sumcircuit.data.splits import canonical_split_name, split_by_hash
from sumcircuit.errors import SumcircuitError

log = logging.getLogger(__name__)


def _text(value: Any, origin: str, index: int, field: str) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise SumcircuitError(
                f"{origin} record {index} field {field!r} is not valid UTF-8; re-encode it."
            ) from None
    return value


def record_triples(
    records: list[dict[str, Any]], document_field: str, summary_field: str, origin: str
) -> list[tuple[Any, Any, Any]]:
    """``(id, document, summary)`` per record; a missing field is a clear error."""
    triples = []
    for index, record in enumerate(records, 1):
        for field in (document_field, summary_field):
            if field not in record:
                raise SumcircuitError(
                    f"{origin} record {index} has no field {field!r}; fields found: "
                    f"{', '.join(map(str, record)) or '(none)'} — choose the columns with "
                    "--document-field/--summary-field (document_field=/summary_field=)."
                )
        triples.append(
            (
                _text(record.get("id"), origin, index, "id"),
                _text(record[document_field], origin, index, document_field),
                _text(record[summary_field], origin, index, summary_field),
            )
        )
    return triples


def _merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if isinstance(value, list):
                merged[key] = (merged.get(key, []) + value)[:20]
            else:
                merged[key] = merged.get(key, 0) + value
    return merged


def build_dataset(
    name: str,
    labelled: dict[str | None, list[tuple[Any, Any, Any]]],
    *,
    checksum: str,
    source: str,
    origin: str,
    fields: tuple[str, str],
) -> Dataset:
    """Clean the records and split them: by the source's labels, or by hashed id (key None)."""
    splits: dict[str, list[Example]] = {}
    if None in labelled:
        examples, report = clean_examples(labelled[None], origin=origin, fields=fields)
        splits = split_by_hash(examples)
        report["split_method"] = "hash"
    else:
        reports = []
        for split, triples in labelled.items():
            assert split is not None
            splits[split], rep = clean_examples(
                triples, origin=f"{origin} [{split}]", fields=fields
            )
            reports.append(rep)
        report = _merge_reports(reports)
        report["split_method"] = "source"
        splits = {s: splits[s] for s in SPLIT_NAMES if s in splits}
    report["fields"] = list(fields)
    if not any(splits.values()):
        raise SumcircuitError(
            f"{origin} holds no document/summary pair ({report.get('records', 0)} records, "
            f"{report.get('dropped_empty', 0)} dropped as empty); give a file with at least one "
            f"record whose {fields[0]!r} and {fields[1]!r} fields are both non-empty."
        )
    dataset = Dataset(name=name, splits=splits, checksum=checksum, source=source, report=report)
    log.info("loaded %s: %s", name, ", ".join(f"{k} {v}" for k, v in dataset.sizes().items()))
    return dataset


def label_records(
    records: list[dict[str, Any]], origin: str
) -> dict[str | None, list[dict[str, Any]]]:
    """Group records by their ``split`` field when every record has one, else under None."""
    if not records or not all("split" in record for record in records):
        return {None: records}
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for index, record in enumerate(records, 1):
        split = canonical_split_name(str(record["split"]))
        if split is None:
            raise SumcircuitError(
                f"{origin} record {index} has split {record['split']!r}; use train, validation "
                "(or val/dev) or test, or drop the split column to split by hashed id."
            )
        groups.setdefault(split, []).append(record)
    return groups
