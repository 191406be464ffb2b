"""``placement.json``: the placement curve as a result (:class:`PlacementResult`).

``runs``: every trained (or base) run by key (``base``, ``all-r8``, ``layers-2-5-11-r8``): its
layers (None: every layer; [] for the base model), rank, trainable parameters, optimizer steps,
training seconds and mean log-likelihood with its 95% CI. ``per_doc``: each run's held-out
log-likelihood per reference token of every outcome document, in the order of
``documents["outcome"]["ids"]`` (so that paired differences and new statistics can be computed
from the file alone). ``rows``: one per view (``same-rank``; ``matched`` with
``--matched``), locator and k: its layers and run, LL [CI], percentile among the random sets and
gap closed [CI]. ``random``: the band per view and k. ``single_layer``: each layer alone and every
locator's Spearman correlation with it (None unless swept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from sumcircuit.errors import SumcircuitError
from sumcircuit.results import StageResult

__all__ = ["BASE", "MATCHED", "ROW_COLUMNS", "SAME_RANK", "PlacementResult", "run_key"]

SAME_RANK, MATCHED = "same-rank", "matched"
BASE = "base"
ROW_COLUMNS = (
    "view",
    "locator",
    "k",
    "layers",
    "rank",
    "run",
    "loglik",
    "loglik_ci95",
    "percentile",
    "gap_closed",
    "gap_closed_ci95",
    "trainable_params",
)


#: Row fields that are numbers: null in the JSON (a NaN or inf) reads back as NaN.
_NUMBERS = ("loglik", "percentile", "gap_closed")


def run_key(layers: list[int] | None, rank: int) -> str:
    """A run's folder and key, by its layer set and rank: ``all-r8``, ``layers-2-5-11-r8``."""
    if layers is None:
        return f"all-r{rank}"
    return "layers-" + "-".join(str(layer) for layer in sorted(layers)) + f"-r{rank}"


def _finite(value: Any) -> Any:
    """NaN and inf as None (JSON has neither), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@dataclass
class PlacementResult(StageResult):
    FILE: ClassVar[str] = "placement.json"
    STAGE: ClassVar[str] = "placement"
    FILE_OR_DIR: ClassVar[bool] = True  # export-peft --placement path/placement.json

    model: dict[str, Any]  # the base model's identity
    n_layers: int
    sizes: list[int]
    rank: int
    runs: dict[str, dict[str, Any]]
    per_doc: dict[str, list[float]]
    rows: list[dict[str, Any]]
    random: list[dict[str, Any]]
    documents: dict[str, Any]
    locators: dict[str, dict[str, Any]] = field(default_factory=dict)
    single_layer: dict[str, Any] | None = None
    wall_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.documents.get("outcome", {}).get("ids", []))
        short = [k for k, v in self.per_doc.items() if len(v) != n]
        if short:
            raise SumcircuitError(
                f"the per-document log-likelihoods of run {short[0]} do not cover the {n} "
                "outcome documents"
            )

    def to_dict(self) -> dict[str, Any]:
        return _finite(super().to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlacementResult:
        data = dict(data)
        data["rows"] = [
            {k: (math.nan if v is None and k in _NUMBERS else v) for k, v in row.items()}
            for row in data.get("rows", [])
        ]
        return super().from_dict(data)

    # -- queries -----------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """The curve: one row per view, locator and k (:data:`ROW_COLUMNS`)."""
        return pd.DataFrame(self.rows, columns=list(ROW_COLUMNS))

    def per_doc_frame(self) -> pd.DataFrame:
        """Documents (index: id) × runs: the held-out log-likelihood per reference token."""
        ids = self.documents["outcome"]["ids"]
        return pd.DataFrame(self.per_doc, index=pd.Index(ids, name="id"))

    def row(self, locator: str, k: int, view: str = SAME_RANK) -> dict[str, Any]:
        """The row of ``locator`` at size ``k``, or one sentence naming what the curve has."""
        for row in self.rows:
            if (row["locator"], row["k"], row["view"]) == (locator, k, view):
                return row
        have = sorted({r["locator"] for r in self.rows})
        raise SumcircuitError(
            f"the placement curve has no {view} point of locator {locator!r} at k={k} (locators: "
            f"{', '.join(have)}; sizes: {', '.join(map(str, self.sizes))})"
        )

    def best_at(self, k: int, view: str = SAME_RANK) -> dict[str, Any]:
        """The row of the locator that closes the most gap at ``k`` (ties: the first listed)."""
        rows = [r for r in self.rows if r["k"] == k and r["view"] == view]
        rows = [r for r in rows if r["gap_closed"] is not None and math.isfinite(r["gap_closed"])]
        if not rows:
            raise SumcircuitError(
                f"the placement curve has no {view} point at k={k} (sizes: "
                f"{', '.join(map(str, self.sizes))}); add {k} to its sizes"
            )
        return max(rows, key=lambda r: r["gap_closed"])

    def band(self, k: int, view: str = SAME_RANK) -> dict[str, Any]:
        """The random sets at ``k``: their runs, layers and log-likelihoods."""
        for entry in self.random:
            if entry["k"] == k and entry["view"] == view:
                return entry
        raise SumcircuitError(f"the placement curve has no {view} random sets at k={k}")

    def reference(self, name: str) -> dict[str, Any]:
        """The ``base`` model's or the all-layer (standard) run's record."""
        key = BASE if name == BASE else run_key(None, self.rank)
        return self.runs[key]
