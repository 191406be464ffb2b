"""The exact patching scan: the sufficiency of every single layer (or head) alone.

For each component c (a whole layer — its write to the residual stream, block output − block
input, :mod:`sumcircuit.analysis.causal.patching` — or one head), sufficiency(c) =
Σ_d (m_patch,d − m_base,d) / Σ_d (m_ft,d − m_base,d), the base model with c patched in from the
fine-tuned model (definitions in :mod:`sumcircuit.analysis.causal.validate`), with a bootstrap CI over
documents. Written as ``DIR/exact.csv`` with columns exactly
``layer,head,sufficiency,sufficiency_lo,sufficiency_hi`` (head = -1 on layer rows), for people
and spreadsheets, plus ``DIR/exact.json`` (everything; written last), which ``ExactResult.load``
reads — ``locate --score exact --sources exact=DIR`` and the plot go through it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from sumcircuit.analysis.causal.patching import (
    Components,
    PatchingConfig,
    patch_effects,
    prepare_pair,
    run_record,
)
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import write_json
from sumcircuit.results import StageResult, write_table
from sumcircuit.stats import recovered

CSV_FILE = "exact.csv"
JSON_FILE = "exact.json"
COLUMNS = ("layer", "head", "sufficiency", "sufficiency_lo", "sufficiency_hi")
LEVELS = ("layer", "head")


@dataclass
class ExactConfig(PatchingConfig):
    level: Literal["layer", "head"] = field(
        default="layer", metadata={"help": "scan single layers or single heads"}
    )  # checked against its Literal by DictConfig


@dataclass
class ExactResult(StageResult):
    """``rows``: one dict per component with the CSV columns; m_base/m_ft: mean m unpatched;
    ``doc_ids``: the documents scanned (empty in files written before it was recorded)."""

    FILE: ClassVar[str] = JSON_FILE  # everything; written last
    STAGE: ClassVar[str] = "exact"
    TABLE_FILE: ClassVar[str] = CSV_FILE  # the rows as a table, for spreadsheets

    level: str
    rows: list[dict[str, Any]]
    m_base: float
    m_ft: float
    n_docs: int
    timing: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    doc_ids: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExactResult:
        result = super().from_dict(data)
        for i, row in enumerate(result.rows):
            missing = [c for c in COLUMNS if c not in row]
            if missing:
                raise SumcircuitError(
                    f"scan row {i} lacks {', '.join(missing)}; expected {', '.join(COLUMNS)}"
                )
        return result

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    def save(self, directory: str | Path) -> Path:
        """Write ``exact.csv`` and ``exact.json`` (last); returns the CSV's path."""
        directory = Path(directory)
        write_table(directory / self.TABLE_FILE, self.to_frame())
        write_json(directory / self.FILE, self.to_dict())
        return directory / self.TABLE_FILE

    def scores(self, level: str) -> pd.Series:
        """Sufficiency of every layer (indexed by layer) or head (by ``(layer, head)``)."""
        return self._rows(level)["sufficiency"].astype(float)

    def ci(self, level: str) -> np.ndarray:
        """(n, 2) bootstrap 95% CI of the sufficiencies, in the order of ``scores(level)``."""
        return self._rows(level)[["sufficiency_lo", "sufficiency_hi"]].to_numpy(np.float64)

    def _rows(self, level: str) -> pd.DataFrame:
        frame = self.to_frame()
        rows = frame[frame["head"] == -1] if level == "layer" else frame[frame["head"] >= 0]
        if rows.empty:
            raise SumcircuitError(
                f"the scan has no {level}-level rows (it is a {self.level} scan); run "
                f"sumcircuit scan --level {level}"
            )
        keys = ["layer"] if level == "layer" else ["layer", "head"]
        return rows.set_index(keys).sort_index()


def exact_scan(config: ExactConfig) -> ExactResult:
    """Sufficiency of each single layer (``level="layer"``) or head (``"head"``) alone."""
    start = time.perf_counter()
    pair = prepare_pair(config, stage="exact")
    arch = pair.base.arch
    if config.level == "layer":
        keys = [(layer, -1) for layer in range(arch.n_layers)]
        sets = [Components.from_layers(arch, [layer]) for layer, _ in keys]
    else:
        keys = [(layer, head) for layer in range(arch.n_layers) for head in range(arch.n_heads)]
        sets = [Components.from_heads(arch, [key]) for key in keys]
    loaded = time.perf_counter()
    effects = patch_effects(
        pair.base, pair.ft, pair.prepared, sets, batch_size=config.batch_size, necessity=False
    )
    swept = time.perf_counter()
    value, lo, hi = recovered(
        effects.m_suff - effects.m_base[:, None],
        effects.m_ft - effects.m_base,
        n_boot=config.n_boot,
        seed=config.seed,
        min_delta=config.min_delta,
    )
    rows = [
        dict(zip(COLUMNS, (layer, head, float(v), float(a), float(b)), strict=True))
        for (layer, head), v, a, b in zip(keys, value, lo, hi, strict=True)
    ]
    record = run_record(config, pair, effects, start=start, loaded=loaded, swept=swept)
    record["provenance"]["data"]["ids"] = list(pair.prepared.ids)  # what selected, by id
    return ExactResult(
        level=config.level,
        rows=rows,
        m_base=float(np.mean(effects.m_base)),
        m_ft=float(np.mean(effects.m_ft)),
        n_docs=len(pair.prepared),
        doc_ids=list(pair.prepared.ids),
        **record,
    )
