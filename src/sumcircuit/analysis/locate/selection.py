"""Selection documents: which documents chose a ranking or a circuit, and the check that a
stage which *scores* (``faithfulness``, ``validate``) never scores on them.

A selection *record* names the documents one input was computed on: its ``role`` (``ranking``:
the locator's scores; ``locator choice``: the faithfulness curves that chose the locator;
``control``: a control diff), the locator it belongs to, the data set's identity (``name``,
``checksum``), the ``split`` and ``limit`` it read and the document ``ids``. Rankings
(:meth:`~sumcircuit.analysis.locate.registry.Ranking.documents`) and circuits
(:attr:`~sumcircuit.analysis.locate.circuit.Circuit.documents`) carry them.

Overlap is decided by document id within the same data set (same checksum, or the same name
where a checksum is missing), *whatever the splits are called*: a document that selected is
refused under any split name. A record written before ids were recorded is resolved from its
split and limit (the first ``limit`` documents of that split of the scoring data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any

from sumcircuit.errors import SumcircuitError

log = logging.getLogger(__name__)

__all__ = [
    "allow_overlap_field",
    "check_disjoint",
    "merged",
    "overlapping",
    "record",
    "resolver",
    "same_data",
]

#: ``resolve(split, limit) -> ids``: the first ``limit`` documents of ``split`` of the scoring data
Resolve = Callable[[str, int | None], list[str]]


def record(
    role: str,
    data: dict[str, Any],
    split: str | None,
    limit: int | None,
    ids: Iterable[str] | None,
    *,
    source: str | None = None,
) -> dict[str, Any]:
    """One selection record (see the module docstring); ``ids`` None when not recorded."""
    return {
        "role": role,
        "source": source,
        "data": {k: data[k] for k in ("name", "checksum") if data.get(k) is not None},
        "split": split,
        "limit": limit,
        "ids": None if ids is None else [str(i) for i in ids],
    }


def same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two data identities name one data set: by checksum where both have one, else by
    name; an identity with neither is taken to be the same data set (the safe side)."""
    if a.get("checksum") and b.get("checksum"):
        return a["checksum"] == b["checksum"]
    if a.get("name") and b.get("name"):
        return a["name"] == b["name"]
    return True


def resolver(config: Any) -> Resolve:
    """The documents of an older record (no ids) from a stage config's data options: the first
    ``limit`` of ``split`` of ``config.data``."""

    def resolve(split: str, limit: int | None) -> list[str]:
        from sumcircuit.data.sources import load_dataset

        columns = {"document_field": config.document_field, "summary_field": config.summary_field}
        examples = load_dataset(config.data, **columns).split(split)
        return [e.id for e in examples[:limit]]

    return resolve


def overlapping(
    scoring_ids: Iterable[str],
    data: dict[str, Any],
    records: Iterable[dict[str, Any] | None],
    resolve: Resolve | None = None,
) -> list[str]:
    """The scoring documents (in their order) that some record on the same data selected."""
    chosen: set[str] = set()
    for rec in records:
        if rec is None or not same_data(rec.get("data") or {}, data):
            continue
        ids = rec.get("ids")
        if ids is None and rec.get("split") is not None and resolve is not None:
            ids = resolve(rec["split"], rec.get("limit"))
        chosen.update(ids or ())
    return [i for i in scoring_ids if i in chosen]


def check_disjoint(
    scoring_ids: list[str],
    overlap: list[str],
    records: Iterable[dict[str, Any] | None],
    *,
    allow_overlap: bool,
    what: str,
    fix: str,
) -> dict[str, Any]:
    """Refuse, in one sentence naming the count and ``fix``, to score ``what`` on documents
    that selected it, unless ``allow_overlap``; returns what the result records."""
    sources = sorted({f"{r['source'] or r['role']}" for r in records if r is not None})
    if overlap and not allow_overlap:
        raise SumcircuitError(
            f"{len(overlap)} of the {len(scoring_ids)} scoring documents selected {what} "
            f"({', '.join(sources)}), so scoring on them would be circular; {fix}, or pass "
            "--allow-overlap to score on them knowingly"
        )
    if overlap:
        log.warning(
            "scoring %s on %d of its own %d selection documents (--allow-overlap): the figures "
            "are not held-out",
            what,
            len(overlap),
            len(scoring_ids),
        )
    return {"overlap": len(overlap), "allow_overlap": bool(allow_overlap), "selected_by": sources}


def merged(records: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """``records`` without repeats: records of the same documents (several of the diff's
    locators read one diff) become one, their ``source`` a comma-separated list."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rec in records:
        if rec is None:
            continue
        ids = tuple(rec["ids"]) if rec.get("ids") is not None else None
        key = (rec["role"], tuple(sorted(rec["data"].items())), rec["split"], rec["limit"], ids)
        if key in out:
            out[key]["source"] = f"{out[key]['source']},{rec['source']}"
        else:
            out[key] = dict(rec)
    return list(out.values())


def allow_overlap_field() -> Any:
    """The ``allow_overlap`` option of a stage that scores."""
    return field(
        default=False,
        metadata={
            "help": "score even on documents that selected the components (recorded in the "
            "result; the figures are then not held-out)"
        },
    )
