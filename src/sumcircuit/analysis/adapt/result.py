"""``AdaptResult``: the adaptation scores of every layer (and of every target matrix) of a base
model, with the documents they were computed on.

Files: ``adapt_layers.csv`` (one row per layer, one column per computed score),
``adapt_matrices.csv`` (one row per LoRA target matrix) for people and spreadsheets, and
``adapt.json`` (everything; written last), which :meth:`AdaptResult.load` reads — the adaptation
locators (:mod:`sumcircuit.analysis.locate.adapt`) go through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import write_json
from sumcircuit.results import StageResult, write_table

#: Each part of the stage and the scores (locator names) it gives.
PARTS: dict[str, tuple[str, ...]] = {
    "gradients": ("rgn", "fisher", "grad-energy"),
    "probe": ("probe-norm", "probe-act"),
    "spectrum": ("spectrum-snr",),
}
#: locator name -> its column in the tables
COLUMNS: dict[str, str] = {
    name: name.replace("-", "_") for scores in PARTS.values() for name in scores
}


def part_of(score: str) -> str:
    """The part of the stage that computes ``score`` (a locator name)."""
    return next(part for part, scores in PARTS.items() if score in scores)


@dataclass
class AdaptResult(StageResult):
    """``layer_rows``: ``{"layer": l, <column>: score, ...}`` for each layer, with the columns of
    every computed part; ``matrix_rows``: the same per target matrix (plus ``module``, ``kind``
    and the matrix's ``weight_norm``); ``doc_ids``: the training pairs each part read, by part;
    ``probe``: what the LoRA probe trained (steps, rank, alpha, lr, losses, its folder)."""

    FILE: ClassVar[str] = "adapt.json"  # everything; written last
    STAGE: ClassVar[str] = "adapt"
    LAYER_FILE: ClassVar[str] = "adapt_layers.csv"
    MATRIX_FILE: ClassVar[str] = "adapt_matrices.csv"

    n_layers: int
    parts: list[str]
    layer_rows: list[dict[str, Any]]
    matrix_rows: list[dict[str, Any]]
    doc_ids: dict[str, list[str]] = field(default_factory=dict)
    probe: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptResult:
        result = super().from_dict(data)
        unknown = [p for p in result.parts if p not in PARTS]
        if unknown:
            raise SumcircuitError(
                f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}"
            )
        needed = ["layer", *(COLUMNS[s] for p in result.parts for s in PARTS[p])]
        if sorted(row.get("layer", -1) for row in result.layer_rows) != list(
            range(result.n_layers)
        ):
            raise SumcircuitError(f"the layer rows are not layers 0..{result.n_layers - 1}")
        for i, row in enumerate(result.layer_rows):
            missing = [c for c in needed if c not in row]
            if missing:
                raise SumcircuitError(f"layer row {i} lacks {', '.join(missing)}")
        return result

    def to_frame(self) -> pd.DataFrame:
        """One row per layer, one column per computed score."""
        return pd.DataFrame(self.layer_rows).sort_values("layer").reset_index(drop=True)

    def matrices(self) -> pd.DataFrame:
        """One row per LoRA target matrix."""
        return pd.DataFrame(self.matrix_rows)

    def save(self, directory: str | Path) -> Path:
        """Write both tables and ``adapt.json`` (last); returns the JSON file's path."""
        directory = Path(directory)
        write_table(directory / self.LAYER_FILE, self.to_frame())
        write_table(directory / self.MATRIX_FILE, self.matrices())
        path = self.path(directory)
        write_json(path, self.to_dict())
        return path

    def scores(self, locator: str) -> pd.Series:
        """The layer scores of adaptation locator ``locator`` (higher: a better place to
        adapt), indexed by layer."""
        part = part_of(locator)
        if part not in self.parts:
            raise SumcircuitError(
                f"this adapt result has no {locator} scores (its parts: {', '.join(self.parts)}); "
                f"rerun sumcircuit adapt with --parts {part}"
            )
        frame = self.to_frame().set_index("layer")
        return frame[COLUMNS[locator]].astype(float).rename(locator)

    def documents(self) -> set[str]:
        """Every document any part read."""
        return {doc for ids in self.doc_ids.values() for doc in ids}
