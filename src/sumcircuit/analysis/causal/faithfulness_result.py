"""The faithfulness stage's result: curves per locator, random bands, areas, and which
documents selected and which scored (``faithfulness.json``; ``faithfulness.csv`` for people).

Apart from :mod:`sumcircuit.analysis.causal.faithfulness` so that ``locate --score faithful`` can read it
without importing the patching sweep that writes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import write_json
from sumcircuit.results import StageResult, write_table

CURVE_COLUMNS = (
    "locator",
    "size",
    "fraction",
    "sufficiency",
    "sufficiency_lo",
    "sufficiency_hi",
    "sufficiency_percentile",
    "necessity",
    "necessity_lo",
    "necessity_hi",
    "necessity_percentile",
    "sufficiency_norm",
    "necessity_norm",
)


@dataclass
class FaithfulnessResult(StageResult):
    """``curves``: one row per (locator, size) with :data:`CURVE_COLUMNS` (fractions of
    m_ft − m_base; ``*_norm``: divided by the ceiling); ``random``: per size the random sets'
    sufficiency and necessity; ``areas``: per locator CPR and CMD with bootstrap CIs, the
    necessity area and the normalised CPR; ``documents``: which documents selected and which
    scored (ids, overlap); ``sources``: how ``locate`` reads each locator's ranking, and whether
    it ranks signed or absolute scores; ``ceiling``: f(all) and g(all), every node of the level
    patched; ``gain``: m_ft − m_base with its CI and flags
    (:func:`sumcircuit.stats.gain_check`); ``choice``: the most faithful candidate, the paired
    CPR difference to the runner-up and the tie rule (:func:`...areas.choose`). Results written
    before the last three existed load with them empty."""

    FILE: ClassVar[str] = "faithfulness.json"
    STAGE: ClassVar[str] = "faithfulness"
    TABLE_FILE: ClassVar[str] = "faithfulness.csv"

    level: str
    n_components: int
    curves: list[dict[str, Any]]
    random: list[dict[str, Any]]
    areas: dict[str, dict[str, float]]
    documents: dict[str, Any]
    sources: dict[str, dict[str, Any]]  # locator -> its name and the directory it reads (or None)
    timing: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    ceiling: dict[str, Any] = field(default_factory=dict)
    gain: dict[str, Any] = field(default_factory=dict)
    choice: dict[str, Any] | None = None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.curves, columns=list(CURVE_COLUMNS))

    def random_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.random)

    def save(self, directory: str | Path) -> Path:
        """The sources' directories are written relative to ``directory``, so a run directory
        moved as a whole still locates from its own stages."""
        directory = Path(directory)
        data = self.to_dict()
        for source in data["sources"].values():
            if source["directory"] is None:  # a position baseline reads no directory
                continue
            source["directory"] = os.path.relpath(
                Path(source["directory"]).absolute(), directory.absolute()
            )
        write_table(directory / self.TABLE_FILE, self.to_frame())
        write_json(directory / self.FILE, data)
        return directory / self.TABLE_FILE

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        result = super().load(directory)
        for source in result.sources.values():  # relative to the result (absolute: kept)
            if source.get("directory") is None:
                continue
            source["directory"] = os.path.normpath(Path(directory) / source["directory"])
        return result

    def best(self, candidates: list[str] | None = None) -> str:
        """The most faithful locator among ``candidates`` (default: every registered locator
        that may be a circuit, never a position baseline). With the default candidates the
        recorded ``choice`` decides (highest CPR, ties by its rule); otherwise, and for results
        without a choice, the highest CPR (ties: the lower CMD)."""
        default = candidates is None
        if candidates is None:
            from sumcircuit.analysis.locate.registry import names

            candidates = names(candidates_only=True)
        pool = [k for k in self.areas if k in candidates]
        if not pool:
            raise SumcircuitError(
                f"no candidate locator among the faithfulness curves ({', '.join(self.areas)}); "
                "add a diff, attribution or exact source"
            )
        if default and self.choice and self.choice.get("winner") in pool:
            return self.choice["winner"]
        return max(pool, key=lambda k: (self.areas[k]["cpr"], -self.areas[k]["cmd"]))

    def at_size(self, locator: str, size: int) -> dict[str, Any]:
        """The curve row of ``locator`` at circuit size ``size``."""
        for row in self.curves:
            if row["locator"] == locator and row["size"] == size:
                return row
        raise KeyError((locator, size))
