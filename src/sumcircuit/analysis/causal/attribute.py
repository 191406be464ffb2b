"""The ``attribute`` stage: attribution patching of every head, MLP and layer, as a table.

Estimates (:mod:`sumcircuit.analysis.causal.attribution`) are normalised like ``scan``'s exact
sufficiency: value(c) = Σ_d est_d(c) / Σ_d (m_ft,d − m_base,d), with a bootstrap 95% CI over
documents; the necessity (what patching c from the base into the fine-tuned model takes away)
likewise — for the path methods it equals the sufficiency (the same path integral read from the
other end). ``atp``'s result also gives the ``atp-trapezoid`` estimate, the mean of its two
(:meth:`AttributionResult.trapezoid`). Rows have ``scan``'s layout (``layer, head, sufficiency, sufficiency_lo,
sufficiency_hi``, head −1 on whole-layer rows) plus the necessity columns, so
``locate --score attribution --attribution DIR`` ranks by them as ``--score causal`` ranks a scan.

Files: ``attribution_layer.csv``, ``attribution_head.csv``, ``attribution_mlp.csv`` (one table
per level, for people and spreadsheets), ``attribution_per_doc.parquet`` (every document's
estimate of every component) and ``attribution.json`` (everything but the per-document values;
written last). Under ``torchrun`` documents are sharded across ranks like ``diff``'s and the
per-document values gathered by a sum; rank 0 writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from sumcircuit.analysis.causal.attribution import (
    METHODS,
    RENAMED_METHODS,
    Attribution,
    attribute,
    method_name,
)
from sumcircuit.analysis.causal.exact import COLUMNS, ExactResult
from sumcircuit.analysis.causal.patching import PatchingConfig, prepare_pair
from sumcircuit.configs import check_at_least
from sumcircuit.data.batching import Prepared
from sumcircuit.distributed import Processes
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import write_json
from sumcircuit.provenance import provenance
from sumcircuit.results import read_table, write_table
from sumcircuit.stats import gain_check, recovered

NECESSITY = ("necessity", "necessity_lo", "necessity_hi")
ROW_COLUMNS = (*COLUMNS, *NECESSITY)
LEVELS = ("layer", "head", "mlp")


@dataclass
class AttributeConfig(PatchingConfig):
    method: str = field(
        default="atp",
        metadata={
            "help": "atp: gradients at both ends (also gives atp-trapezoid, their mean); "
            "ig-direct: the gradient averaged over a path on which every site is held at its "
            "interpolated value (direct effects only); ig-weights: averaged over the path of "
            "weights from base to fine-tuned (a path-averaged gradient, no completeness)",
            "choices": (*METHODS, *RENAMED_METHODS),
        },
    )
    ig_steps: int = field(default=8, metadata={"help": "points on the path for the IG methods"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.method = method_name(self.method)
        check_at_least(self, ("ig_steps",), 1)


@dataclass
class AttributionResult(ExactResult):
    """``rows``: whole layers (head −1) and single heads, with ``scan``'s columns plus necessity;
    ``mlp_rows``: each layer's MLP alone; ``per_doc``: one row per (document, component)."""

    FILE: ClassVar[str] = "attribution.json"
    STAGE: ClassVar[str] = "attribute"
    TABLE_FILE: ClassVar[str] = "attribution_layer.csv"
    HEAD_FILE: ClassVar[str] = "attribution_head.csv"
    MLP_FILE: ClassVar[str] = "attribution_mlp.csv"
    PER_DOC_FILE: ClassVar[str] = "attribution_per_doc.parquet"

    method: str = "atp"
    ig_steps: int = 0
    mlp_rows: list[dict[str, Any]] = field(default_factory=list)
    per_doc: pd.DataFrame | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.pop("per_doc", None)
        return data

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(ROW_COLUMNS))

    def frame(self, level: str) -> pd.DataFrame:
        """The table of one level: ``layer``, ``head`` or ``mlp``."""
        if level == "mlp":
            return pd.DataFrame(self.mlp_rows, columns=list(ROW_COLUMNS))
        whole = self.to_frame()
        return whole[(whole["head"] == -1) == (level == "layer")].reset_index(drop=True)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        for level, name in zip(
            LEVELS, (self.TABLE_FILE, self.HEAD_FILE, self.MLP_FILE), strict=True
        ):
            write_table(directory / name, self.frame(level))
        if self.per_doc is not None:
            write_table(directory / self.PER_DOC_FILE, self.per_doc)
        write_json(directory / self.FILE, self.to_dict())
        return directory / self.TABLE_FILE

    @classmethod
    def load(cls, directory: str | Path) -> AttributionResult:
        result = super().load(directory)
        per_doc = Path(directory) / cls.PER_DOC_FILE
        if per_doc.exists():
            result.per_doc = read_table(per_doc, cls.fix(directory), columns=("doc",))
        return result

    def necessity(self, level: str) -> pd.Series:
        """Estimated necessity per layer or head (for the path methods: their sufficiency; NaN
        in results written before the path methods reported it)."""
        return self._rows(level)["necessity"].astype(float)

    def trapezoid(self, level: str) -> pd.Series:
        """The trapezoid estimate per layer or head: the mean of atp's sufficiency (gradient at
        the base model) and necessity (gradient at the fine-tuned model) — both share the
        denominator Σ_d (m_ft − m_base), so this is Σ_d Δa · ½ (g_base + g_ft) normalised."""
        if self.method != "atp":
            raise SumcircuitError(
                f"the trapezoid estimate needs atp's two end gradients; this attribution holds "
                f"{self.method} (run sumcircuit attribute --method atp)"
            )
        return (self.scores(level) + self.necessity(level)) / 2.0


def _on_rank(prepared: Prepared, procs: Processes) -> tuple[list[int], Prepared]:
    mine = procs.shard(len(prepared))
    return mine, Prepared(
        encoded=[prepared.encoded[i] for i in mine],
        ids=[prepared.ids[i] for i in mine],
        examples=[],
    )


def _gathered(part: Attribution, mine: list[int], n: int, procs: Processes) -> Attribution:
    """Every document's values on every rank: each rank fills its own rows, then a sum."""
    arrays = {}
    names = ("heads_suff", "mlps_suff", "layers_suff", "heads_nec", "mlps_nec", "layers_nec")
    for name in (*names, "m_base", "m_ft"):
        local = getattr(part, name)
        full = torch.zeros((n, *local.shape[1:]), dtype=torch.float64)
        full[mine] = torch.from_numpy(np.nan_to_num(local, nan=0.0))
        arrays[name] = procs.sum_(full).numpy()
    passes = procs.sum_(torch.tensor([part.n_passes], dtype=torch.float64))
    return Attribution(method=part.method, n_passes=int(passes.item()), **arrays)


def _rows(
    keys: list[tuple[int, int]],
    suff: np.ndarray,
    nec: np.ndarray,
    den: np.ndarray,
    config: AttributeConfig,
) -> list[dict[str, Any]]:
    """Normalised values with bootstrap CIs; suff/nec: (n_docs, len(keys))."""
    kw = dict(n_boot=config.n_boot, seed=config.seed, min_delta=config.min_delta, warn=False)
    s = recovered(suff, den, **kw)
    n = recovered(nec, den, **kw)
    return [
        dict(zip(ROW_COLUMNS, (layer, head, *map(float, values)), strict=True))
        for (layer, head), *values in zip(keys, *s, *n, strict=True)
    ]


def run_attribute(
    config: AttributeConfig, *, processes: Processes | None = None
) -> AttributionResult:
    """Attribution of every whole layer, head and MLP (documents sharded across processes)."""
    procs = processes or Processes.current()
    start = time.perf_counter()
    pair = prepare_pair(config, stage="attribute")
    arch = pair.base.arch
    L, H = arch.n_layers, arch.n_heads
    loaded = time.perf_counter()
    mine, local = _on_rank(pair.prepared, procs)
    part = attribute(
        pair.base,
        pair.ft,
        local,
        batch_size=config.batch_size,
        method=config.method,
        steps=config.ig_steps,
    )
    att = _gathered(part, mine, len(pair.prepared), procs)
    swept = time.perf_counter()
    den = att.m_ft - att.m_base
    n = len(den)
    layer_keys = [(layer, -1) for layer in range(L)]
    head_keys = [(layer, h) for layer in range(L) for h in range(H)]
    rows = _rows(layer_keys, att.layers_suff, att.layers_nec, den, config)
    rows += _rows(
        head_keys, att.heads_suff.reshape(n, -1), att.heads_nec.reshape(n, -1), den, config
    )
    mlp_rows = _rows(layer_keys, att.mlps_suff, att.mlps_nec, den, config)
    gain_check(den, n_boot=config.n_boot, seed=config.seed)  # one warning for every row
    per_doc = _per_doc(pair.prepared.ids, att, layer_keys, head_keys)
    return AttributionResult(
        level="all",
        rows=rows,
        m_base=float(np.mean(att.m_base)),
        m_ft=float(np.mean(att.m_ft)),
        n_docs=n,
        doc_ids=list(pair.prepared.ids),
        timing={
            "load_s": loaded - start,
            "attribution_s": swept - loaded,
            "total_s": time.perf_counter() - start,
            "passes": att.n_passes,
            "world_size": procs.world,
        },
        provenance=provenance(
            config,
            models={"base": pair.base.identity, "finetuned": pair.ft.identity},
            data=pair.prepared.data_identity
            | {"encode": pair.prepared.report, "ids": list(pair.prepared.ids)},
            seed=config.seed,
        ),
        method=config.method,
        ig_steps=config.ig_steps if config.method != "atp" else 0,
        mlp_rows=mlp_rows,
        per_doc=per_doc,
    )


def _per_doc(ids: list[str], att: Attribution, layer_keys: list, head_keys: list) -> pd.DataFrame:
    """Long table: doc, component (layer / head / mlp), layer, head, sufficiency, necessity."""
    n = len(ids)
    blocks = [
        ("layer", layer_keys, att.layers_suff, att.layers_nec),
        ("head", head_keys, att.heads_suff.reshape(n, -1), att.heads_nec.reshape(n, -1)),
        ("mlp", layer_keys, att.mlps_suff, att.mlps_nec),
    ]
    frames = []
    for component, keys, suff, nec in blocks:
        k = len(keys)
        frames.append(
            pd.DataFrame(
                {
                    "doc": np.repeat(ids, k),
                    "component": component,
                    "layer": np.tile([key[0] for key in keys], n),
                    "head": np.tile([key[1] for key in keys], n),
                    "sufficiency": suff.reshape(-1),
                    "necessity": nec.reshape(-1),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    base = pd.DataFrame({"doc": ids, "m_base": att.m_base, "m_ft": att.m_ft})
    return frame.merge(base, on="doc", how="left")
