"""Which documents train, rank and score a placement curve, and the check that they are disjoint.

Three kinds of readers: the training pairs (the first ``limit`` of the train split, every run),
each locator's documents (its source's ``split`` and ``limit``, recorded in the result it reads:
the diff, attribution and exact scan read validation by default, adaptation locators train), and
the splits reserved for judging models elsewhere (the study's test split). The outcome documents
are ``eval_limit`` documents of ``eval_split`` from ``eval_offset`` on; by default they start just
past every document a reader took from that split. Before any training, their ids are compared
with every reader's: one shared id refuses the curve in one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sumcircuit.analysis.locate.registry import Ranking
from sumcircuit.analysis.placement.config import PlacementConfig
from sumcircuit.data.examples import Dataset
from sumcircuit.errors import SumcircuitError

__all__ = ["Slice", "check_disjoint", "outcome_slice", "readers"]

TRAIN = "train"


@dataclass(frozen=True)
class Slice:
    """``limit`` documents of ``split`` from the ``offset``-th on (None: to the split's end),
    read by ``who``."""

    who: str
    split: str
    offset: int = 0
    limit: int | None = None

    @property
    def end(self) -> int | None:
        return None if self.limit is None else self.offset + self.limit

    def ids(self, dataset: Dataset) -> list[str]:
        return [e.id for e in dataset.split(self.split)[self.offset : self.end]]

    def describe(self) -> str:
        """``validation documents 64-95`` (numbered from 0), ``every test document``."""
        if self.offset == 0 and self.limit is None:
            return f"every {self.split} document"
        last = "end" if self.limit is None else str(self.offset + self.limit - 1)
        return f"{self.split} documents {self.offset}-{last}"

    def to_dict(self) -> dict[str, Any]:
        return {"who": self.who, "split": self.split, "offset": self.offset, "limit": self.limit}


def readers(config: PlacementConfig, rankings: list[Ranking]) -> list[Slice]:
    """Every slice of documents that trained or ranked: the training pairs, each locator's
    documents (the position baselines read none), and each reserved split whole."""
    found = [Slice("the training runs", TRAIN, 0, config.limit)]
    for ranking in rankings:
        if ranking.split is not None:
            found.append(Slice(f"the {ranking.name} locator", ranking.split, 0, ranking.limit))
    found += [Slice("the judged models (reserved)", s) for s in config.reserved_splits]
    return found


def outcome_slice(config: PlacementConfig, read: list[Slice]) -> Slice:
    """The outcome documents: ``eval_offset`` when given, else just past every document a reader
    took from ``eval_split``."""
    if config.eval_offset is not None:
        return Slice("the outcome", config.eval_split, config.eval_offset, config.eval_limit)
    on_split = [s for s in read if s.split == config.eval_split]
    whole = next((s for s in on_split if s.end is None), None)
    if whole is not None:
        raise SumcircuitError(
            f"{whole.who} read every {config.eval_split} document, so none is left to score the "
            "curve on; score on another --eval-split or limit that reader's documents"
        )
    offset = max((s.end for s in on_split), default=0)  # type: ignore[type-var]
    return Slice("the outcome", config.eval_split, offset, config.eval_limit)


def check_disjoint(
    outcome_ids: list[str], outcome: Slice, read: list[Slice], dataset: Dataset
) -> None:
    """Refuse outcome documents that any reader read (by document id), in one sentence."""
    mine = set(outcome_ids)
    for reader in read:
        shared = [i for i in reader.ids(dataset) if i in mine]
        if shared:
            raise SumcircuitError(
                f"the outcome documents ({outcome.describe()}) include {len(shared)} that "
                f"{reader.who} read ({reader.describe()}, e.g. id {shared[0]!r}); score the curve "
                "on documents no locator and no training run saw: raise --eval-offset past them "
                "or choose another --eval-split"
            )
