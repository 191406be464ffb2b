"""The data options every stage config inherits: which examples a stage reads and how it encodes
and batches them, each field with one default and one help text (so one CLI flag text).

:class:`DataOptions` is what fine-tuning takes (it reads the train split, and the validation
split for its checks); :class:`SplitDataOptions` adds the ``split`` of a stage that reads one
(diff, the patching stages, evaluation). A stage that *scores* (evaluate, faithfulness)
reads the test split unless told otherwise (:func:`scoring_split`): the documents that chose
components or trained adapters are never its default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sumcircuit.configs import DictConfig, check_at_least
from sumcircuit.data.prompting import Template

__all__ = ["DataOptions", "SplitDataOptions", "scoring_split"]


@dataclass(kw_only=True)
class DataOptions(DictConfig):
    """The dataset, its columns, how many examples, and how they are encoded and batched."""

    data: str = field(default="xsum", metadata={"help": "dataset name, local file or hf:NAME"})
    document_field: str = field(
        default="document", metadata={"help": "document column (local file or hf:NAME)"}
    )
    summary_field: str = field(
        default="summary", metadata={"help": "reference summary column (local file or hf:NAME)"}
    )
    limit: int | None = field(
        default=None, metadata={"help": "first N examples of the split (default: all)"}
    )
    max_length: int = field(
        default=512, metadata={"help": "tokens per example, prompt + summary (the document is cut)"}
    )
    template: Template = field(default="plain", metadata={"help": "prompt template"})
    batch_size: int = field(default=4, metadata={"help": "examples per batch, on each process"})

    def __post_init__(self) -> None:
        super().__post_init__()  # types and choices of every field
        check_at_least(self, ("limit", "batch_size", "max_length"), 1)


@dataclass(kw_only=True)
class SplitDataOptions(DataOptions):
    """:class:`DataOptions` of a stage that reads one split."""

    split: str = field(default="validation", metadata={"help": "split to read"})


def scoring_split() -> Any:
    """The ``split`` field of a stage that scores: ``test`` by default."""
    return field(
        default="test",
        metadata={"help": "split to score on (default test: no document that selected or trained)"},
    )
