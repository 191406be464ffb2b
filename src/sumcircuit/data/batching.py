"""From a dataset split to padded batches: the one path every stage uses to read examples."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedTokenizerBase

from sumcircuit.data.examples import Example
from sumcircuit.data.options import DataOptions
from sumcircuit.data.prompting import Batch, Encoded, Prompter, Template, collate
from sumcircuit.data.sources import load_dataset
from sumcircuit.errors import SumcircuitError


@dataclass
class Prepared:
    """Encoded examples of one split, with their ids, the raw examples and what was dropped."""

    encoded: list[Encoded]
    ids: list[str]
    examples: list[Example]
    report: dict[str, Any] = field(default_factory=dict)
    data_identity: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.encoded)


def prepare(
    data: str,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    limit: int | None = None,
    offset: int = 0,
    max_length: int = 512,
    template: Template = "plain",
    with_summary: bool = True,
    reserve: int = 0,
    document_field: str = "document",
    summary_field: str = "summary",
) -> Prepared:
    """Load ``split`` of ``data``, keep ``limit`` examples from the ``offset``-th on (the first
    ``limit`` by default), encode them.

    With ``with_summary=False`` only the prompts are encoded (for generation), leaving
    ``reserve`` positions for the generated summary.
    """
    if limit is not None and limit <= 0:
        raise SumcircuitError(f"--limit must be a positive number of examples, got {limit}")
    if offset < 0:
        raise SumcircuitError(f"the offset must be 0 or more examples, got {offset}")
    dataset = load_dataset(data, document_field=document_field, summary_field=summary_field)
    examples = dataset.split(split)[offset:][:limit]
    if not examples:
        where = f" from example {offset} on" if offset else ""
        raise SumcircuitError(f"split {split!r} of {data!r} has no examples{where}")
    prompter = Prompter(tokenizer, template=template, max_length=max_length)
    triples = [(e.id, e.document, e.summary if with_summary else None) for e in examples]
    encoded, ids, report = prompter.encode_many(triples, reserve=reserve)
    if not encoded:
        raise SumcircuitError(
            f"no example of {data!r}/{split} fits max_length={max_length}; raise --max-length"
        )
    kept = set(ids)
    identity = dataset.identity() | {"split": split, "limit": limit}
    if offset:  # recorded only when used: the identity of every first-N read stays as it was
        identity["offset"] = offset
    return Prepared(
        encoded=encoded,
        ids=ids,
        examples=[e for e in examples if e.id in kept],
        report=report.to_dict() | {"dataset": dataset.report},
        data_identity=identity,
    )


def prepare_for(
    config: DataOptions, tokenizer: PreTrainedTokenizerBase, **overrides: Any
) -> Prepared:
    """:func:`prepare` with a stage config's data options (its ``split`` if it has one);
    keywords override them or add the other options."""
    names = ("data", "split", "limit", "max_length", "template", "document_field", "summary_field")
    args = {name: getattr(config, name) for name in names if hasattr(config, name)} | overrides
    return prepare(args.pop("data"), args.pop("split"), tokenizer, **args)


def iter_batches(
    encoded: list[Encoded],
    batch_size: int,
    pad_id: int,
    *,
    by_length: bool = True,
    padding_side: str = "right",
) -> Iterator[tuple[list[int], Batch]]:
    """Yield ``(indices, batch)``; with ``by_length`` examples of similar length share a batch
    (less padding), in a deterministic order. ``indices`` index into ``encoded``."""
    if batch_size <= 0:
        raise SumcircuitError(f"--batch-size must be positive, got {batch_size}")
    order = list(range(len(encoded)))
    if by_length:
        order.sort(key=lambda i: (len(encoded[i].input_ids), i))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, collate([encoded[i] for i in idx], pad_id, padding_side=padding_side)
