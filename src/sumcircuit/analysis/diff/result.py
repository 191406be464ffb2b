"""The diff stage's result: its tables and summary, the files they live in, and the queries the
study, ``locate`` and the report make of them (by measure name, never by column).

Files in a diff directory: ``diff.json`` (the summary, written last), ``heads.csv`` (one row per
(layer, head)), ``layers.csv`` (one row per layer), ``weights_heads.csv``,
``weights_parameters.csv`` and, with ``--per-doc``, ``per_doc.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from sumcircuit.errors import SumcircuitError, reject_unknown_keys
from sumcircuit.io import write_json
from sumcircuit.results import StageResult, read_result_json, read_table, write_table

# measure -> (layers.csv column, heads.csv column); None where the level has no such measure
_MEASURES: dict[str, tuple[str | None, str | None]] = {
    "kl": ("kl_mean", "kl_base_ft"),  # KL(P_base || Q_ft)
    "js": ("js_mean", "js"),
    "entropy": ("delta_entropy_mean", "delta_entropy"),  # H_ft - H_base, signed
    "weight": ("weight_change", "weight_change"),
    "actmag": ("actmag_rel_change", None),
    "cosine": ("cosine", None),
    "cka": ("cka", None),
    "q": (None, "q_value"),  # BH q-value of the per-head entropy change
}
MEASURES = tuple(_MEASURES)
#: the locator measures whose layer score ``per_doc.parquet`` can recompute document by document
#: (the weight change reads no documents)
PER_DOC_MEASURES = ("kl", "js", "entropy", "actmag")


@dataclass
class DiffResult(StageResult):
    """Tables and summary of a diff; ``save(dir)`` writes the files the CLI documents.

    Callers read it through ``load`` and the query methods (``scores``, ``head_grid``,
    ``layer_ci``, ``significant_heads``, ``top_heads``), which take measure names
    (:data:`MEASURES`), never file or column names.
    """

    FILE: ClassVar[str] = "diff.json"  # the summary, written last: its presence marks completion
    STAGE: ClassVar[str] = "diff"
    HEADS_FILE: ClassVar[str] = "heads.csv"
    LAYERS_FILE: ClassVar[str] = "layers.csv"
    HEAD_WEIGHTS_FILE: ClassVar[str] = "weights_heads.csv"
    PARAMETER_WEIGHTS_FILE: ClassVar[str] = "weights_parameters.csv"
    PER_DOC_FILE: ClassVar[str] = "per_doc.parquet"

    summary: dict[str, Any]  # diff.json
    heads: pd.DataFrame  # heads.csv, one row per (layer, head)
    layers: pd.DataFrame  # layers.csv, one row per layer
    head_weights: pd.DataFrame  # weights_heads.csv (q, k, v, o per head; kv_head)
    parameter_weights: pd.DataFrame  # weights_parameters.csv
    per_doc: pd.DataFrame | None = None  # per_doc.parquet (with --per-doc)
    source: Path | None = field(default=None, repr=False, compare=False)  # dir it was loaded from

    def to_frame(self) -> pd.DataFrame:
        return self.heads

    def _tables(self) -> dict[str, pd.DataFrame | None]:
        return {
            "heads": self.heads,
            "layers": self.layers,
            "head_weights": self.head_weights,
            "parameter_weights": self.parameter_weights,
            "per_doc": self.per_doc,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary} | {
            k: (None if v is None else v.to_dict(orient="records"))
            for k, v in self._tables().items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffResult:
        reject_unknown_keys(data, ("summary", *cls._table_names()), "the DiffResult")

        def frame(key: str) -> pd.DataFrame | None:
            return None if data.get(key) is None else pd.DataFrame.from_records(data[key])

        return cls(
            summary=data["summary"],
            heads=frame("heads"),
            layers=frame("layers"),
            head_weights=frame("head_weights"),
            parameter_weights=frame("parameter_weights"),
            per_doc=frame("per_doc"),
        )

    @staticmethod
    def _table_names() -> tuple[str, ...]:
        return ("heads", "layers", "head_weights", "parameter_weights", "per_doc")

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_table(directory / self.HEADS_FILE, self.heads)
        write_table(directory / self.LAYERS_FILE, self.layers)
        for name, frame in (
            (self.HEAD_WEIGHTS_FILE, self.head_weights),
            (self.PARAMETER_WEIGHTS_FILE, self.parameter_weights),
        ):
            if len(frame.columns):  # a diff loaded without its weight tables has none to write
                write_table(directory / name, frame)
        if self.per_doc is not None:
            write_table(directory / self.PER_DOC_FILE, self.per_doc)
        write_json(directory / self.FILE, self.summary)  # last: its presence marks completion
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> DiffResult:
        directory = Path(directory)
        fix = cls.fix(directory)
        summary = read_result_json(directory / cls.FILE, fix)

        def optional(name: str) -> pd.DataFrame | None:
            path = directory / name
            return read_table(path, fix) if path.exists() else None

        heads = read_table(directory / cls.HEADS_FILE, fix, keys=("layer", "head"))
        layers = read_table(directory / cls.LAYERS_FILE, fix, keys=("layer",))
        L, H = summary.get("n_layers"), summary.get("n_heads")
        for name, frame, rows in (
            (cls.HEADS_FILE, heads, L and H and L * H),
            (cls.LAYERS_FILE, layers, L),
        ):
            if rows and len(frame) != rows:
                raise SumcircuitError(
                    f"{str(directory / name)!r} is damaged ({len(frame)} rows, {cls.FILE} says "
                    f"{rows}); {fix}"
                )
        result = cls(
            summary=summary,
            heads=heads,
            layers=layers,
            head_weights=optional(cls.HEAD_WEIGHTS_FILE),
            parameter_weights=optional(cls.PARAMETER_WEIGHTS_FILE),
            per_doc=optional(cls.PER_DOC_FILE),
        )
        if result.head_weights is None:
            result.head_weights = pd.DataFrame()
        if result.parameter_weights is None:
            result.parameter_weights = pd.DataFrame()
        result.source = directory
        return result

    # -- queries ---------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def layers_ranked(self) -> list[int]:
        """Layers by mean KL over their heads, highest first (ties: lower layer first)."""
        return [int(x) for x in self.summary["layers_ranked"]]

    @property
    def provenance(self) -> dict[str, Any]:
        """What the diff was computed from (models, data, config), as every result records it."""
        return dict(self.summary.get("provenance", {}))

    @property
    def models(self) -> dict[str, Any]:
        """Identities of the compared models: ``{"base": ..., "finetuned": ...}``."""
        return dict(self.summary.get("provenance", {}).get("models", {}))

    def _column(self, level: str, measure: str) -> tuple[pd.DataFrame, str, str]:
        if measure not in _MEASURES:
            raise SumcircuitError(f"unknown measure {measure!r}; choose from {', '.join(MEASURES)}")
        if level not in ("layer", "head"):
            raise SumcircuitError(f"level must be 'layer' or 'head', got {level!r}")
        column = _MEASURES[measure][0 if level == "layer" else 1]
        if column is None:
            raise SumcircuitError(f"the diff has no per-{level} {measure}; use the other level")
        frame, name = (
            (self.layers, self.LAYERS_FILE) if level == "layer" else (self.heads, self.HEADS_FILE)
        )
        if column not in frame.columns:
            where = repr(str(self.source / name)) if self.source else f"the diff's {name}"
            raise SumcircuitError(
                f"{where} has no {column} column (needed for {measure}); "
                f"{self.fix(self.source or 'DIR')}"
            )
        return frame, column, name

    def scores(self, level: str, measure: str) -> pd.Series:
        """``measure`` of every layer (indexed by layer) or head (by ``(layer, head)``), sorted
        by index; signed (``entropy`` is H_ft − H_base)."""
        frame, column, _ = self._column(level, measure)
        keys = ["layer"] if level == "layer" else ["layer", "head"]
        return frame.set_index(keys)[column].astype(float).sort_index()

    def layer_scores_per_doc(self, measure: str = "kl") -> np.ndarray | None:
        """(n_docs, L): each document's ``measure`` averaged over a layer's heads — the values
        whose mean over documents is the layer's score — or None where the diff has no
        per-document table (run diff with --per-doc). Documents sorted by id."""
        if self.per_doc is None:
            return None
        _, column, _ = self._column("head", measure)
        values = self._per_doc_head_values(measure, column)
        if values is None:
            raise SumcircuitError(
                f"the diff's {self.PER_DOC_FILE} has no {column} column (needed for {measure}); "
                f"{self.fix(self.source or 'DIR')}"
            )
        return self._per_doc_grid(values).to_numpy(dtype=np.float64)  # (n_docs, L)

    def layer_parts_per_doc(self, measure: str) -> tuple[pd.DataFrame, pd.DataFrame | None] | None:
        """Each document's part of a layer score, as (documents × layers) frames indexed by
        document id (sorted): ``(values, None)`` where the score is the mean of ``values`` over
        documents (``kl``, ``js``, ``entropy``; signed), ``(num, den)`` where it is
        Σ num / Σ den (``actmag``: the relative change of token-weighted mean norms). None where
        the diff has no per-document table, or one without the measure's columns (written
        before they were kept). ``weight`` reads no documents: see :data:`PER_DOC_MEASURES`."""
        if measure not in PER_DOC_MEASURES:
            raise SumcircuitError(
                f"the diff's {measure} has no per-document values; per-document measures: "
                f"{', '.join(PER_DOC_MEASURES)}"
            )
        per_doc = self.per_doc
        if per_doc is None:
            return None
        if measure == "actmag":
            needed = ("actmag_base", "actmag_ft", "n_positions")
            if not set(needed) <= set(per_doc.columns):
                return None
            tokens = per_doc["n_positions"].astype(np.float64)
            base = per_doc["actmag_base"] * tokens  # the document's sum of norms
            num = self._per_doc_grid(per_doc["actmag_ft"] * tokens - base)
            return num, self._per_doc_grid(base)
        values = self._per_doc_head_values(measure, _MEASURES[measure][1])
        return None if values is None else (self._per_doc_grid(values), None)

    def _per_doc_head_values(self, measure: str, column: str | None) -> pd.Series | None:
        """The per-document table's values of a head measure (None: no such column)."""
        per_doc = self.per_doc
        if measure == "entropy":
            if not {"entropy_ft", "entropy_base"} <= set(per_doc.columns):
                return None
            return per_doc["entropy_ft"] - per_doc["entropy_base"]
        return per_doc[column] if column in per_doc.columns else None

    def _per_doc_grid(self, values: pd.Series) -> pd.DataFrame:
        """Mean of per-(document, head) ``values`` over each layer's heads: documents × layers."""
        keys = [self.per_doc["doc_id"], self.per_doc["layer"]]
        return values.groupby(keys).mean().unstack("layer").sort_index(axis=1)

    def head_grid(self, measure: str) -> np.ndarray:
        """``measure`` per head as a (L, H) array."""
        frame, column, _ = self._column("head", measure)
        grid = frame.pivot(index="layer", columns="head", values=column).sort_index()
        return grid.sort_index(axis=1).to_numpy(dtype=np.float64)  # (L, H)

    def layer_ci(self, measure: str) -> np.ndarray | None:
        """(L, 2) bootstrap 95% CI of a per-layer measure, or None where the diff has none."""
        _, column, _ = self._column("layer", measure)
        ci = self.summary.get("layer_ci95", {}).get(column)
        return None if ci is None else np.asarray(ci, dtype=np.float64)

    def significant_heads(self, q: float) -> list[tuple[int, int]]:
        """Heads whose entropy change has a BH q-value below ``q``."""
        values = self.scores("head", "q")
        return [(int(layer), int(head)) for layer, head in values.index[values.to_numpy() < q]]

    def top_heads(self, layer: int, n: int, measure: str = "kl") -> list[int]:
        """The ``n`` heads of ``layer`` with the highest ``measure`` (ties: lower head first)."""
        values = self.scores("head", measure).loc[int(layer)]
        ranked = values.sort_values(ascending=False, kind="stable")
        return [int(h) for h in ranked.index[:n]]
