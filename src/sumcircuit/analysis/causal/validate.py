"""Causal validation of a circuit: sufficiency, necessity and random controls.

With m = mean log-likelihood per summary token of the reference summary (teacher-forced,
:func:`sumcircuit.analysis.causal.patching.score`), per document d:

- sufficiency = Σ_d (m_patch,d − m_base,d) / Σ_d (m_ft,d − m_base,d), where m_patch is the base
  model with the circuit's components patched in from the fine-tuned model on the same input;
- necessity = Σ_d (m_ft,d − m_patch,d) / Σ_d (m_ft,d − m_base,d), where m_patch is the
  fine-tuned model with the circuit patched from the base model (``ablation="patch"``), its own
  dataset mean (``"mean"``) or zero (``"zero"``).

Both are ratios of means over documents with a percentile bootstrap CI over documents
(:func:`sumcircuit.stats.ratio_bootstrap_ci`). Controls: K random component sets of the same
size and level as the circuit (seeded, distinct, never the circuit itself), scored the same way;
the circuit's ``random_percentile`` = 100 · (#controls below + ½ #ties) / K, with a bootstrap CI
over documents (controls re-scored on each resample).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from sumcircuit.analysis.causal.patching import (
    Ablation,
    Components,
    Effects,
    PatchingConfig,
    patch_effects,
    prepare_pair,
    run_record,
)
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.configs import check_at_least
from sumcircuit.errors import ConfigError
from sumcircuit.models.archs import Arch
from sumcircuit.results import StageResult
from sumcircuit.stats import bootstrap_ci, percentile_ci, percentile_rank, random_sets, recovered

log = logging.getLogger(__name__)

RESULT_FILE = "validate.json"


@dataclass
class ValidateConfig(PatchingConfig):
    circuit: str = field(default="", metadata={"help": "circuit JSON written by locate"})
    controls: int = field(default=20, metadata={"help": "random component sets of the same size"})
    ablation: Ablation = field(
        default="patch",
        metadata={"help": "necessity: patch from base | mean (ft's dataset mean) | zero"},
    )
    mean_region: str = field(
        default="all",
        metadata={
            "help": "tokens the mean ablation averages over",
            "choices": ("all", "document", "summary"),
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.circuit:
            raise ConfigError("circuit", "{key} is required: the circuit JSON written by locate")
        check_at_least(self, ("controls",), 0)


# -- controls ------------------------------------------------------------------------------------
def control_sets(circuit: Circuit, arch: Arch, count: int, *, seed: int) -> list[Components]:
    """K random sets of the circuit's size and level (layers, or heads anywhere in the model)."""
    if circuit.level == "layer":
        picks = random_sets(
            list(range(arch.n_layers)), len(circuit.layers), count, tuple(circuit.layers), seed=seed
        )
        return [Components.from_layers(arch, list(p)) for p in picks]
    pool = [(layer, head) for layer in range(arch.n_layers) for head in range(arch.n_heads)]
    picks = random_sets(pool, len(circuit.heads), count, tuple(circuit.heads), seed=seed)
    return [Components.from_heads(arch, list(p)) for p in picks]


# -- the result --------------------------------------------------------------------------------
@dataclass
class ValidateResult(StageResult):
    """What ``validate`` found. ``sufficiency``/``necessity``: ``{"value", "ci95": [lo, hi]}``.

    ``controls``: one dict per random set (``components``, ``sufficiency``, ``necessity``);
    ``random_percentile``: per measure ``{"value", "ci95"}`` (None without controls);
    ``per_doc``: ids and per-document m of base, ft, circuit-patched and control-patched runs.
    """

    FILE: ClassVar[str] = RESULT_FILE
    STAGE: ClassVar[str] = "validate"

    m_base: float
    m_ft: float
    delta: dict[str, Any]
    sufficiency: dict[str, Any]
    necessity: dict[str, Any]
    controls: list[dict[str, Any]]
    random_percentile: dict[str, Any] | None
    n_docs: int
    circuit: dict[str, Any]
    ablation: str
    per_doc: dict[str, Any]
    timing: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per component set: the circuit first, then the controls."""
        rows = [{"set": "circuit", **_flat(self.sufficiency, self.necessity)}]
        rows += [
            {"set": f"control{i}", **_flat(c["sufficiency"], c["necessity"])}
            for i, c in enumerate(self.controls)
        ]
        return pd.DataFrame(rows)


def _flat(suff: dict[str, Any], nec: dict[str, Any]) -> dict[str, float]:
    return {
        "sufficiency": suff["value"],
        "sufficiency_lo": suff["ci95"][0],
        "sufficiency_hi": suff["ci95"][1],
        "necessity": nec["value"],
        "necessity_lo": nec["ci95"][0],
        "necessity_hi": nec["ci95"][1],
    }


def _measure(value: np.ndarray, lo: np.ndarray, hi: np.ndarray, j: int) -> dict[str, Any]:
    return {"value": float(value[j]), "ci95": [float(lo[j]), float(hi[j])]}


def summarize(
    effects: Effects,
    sets: list[Components],
    *,
    n_boot: int,
    seed: int,
    min_delta: float,
) -> dict[str, Any]:
    """Sufficiency, necessity, controls and percentiles from a sweep whose set 0 is the circuit."""
    den = effects.m_ft - effects.m_base  # (n,)
    suff_num = effects.m_suff - effects.m_base[:, None]  # (n, S)
    nec_num = effects.m_ft[:, None] - effects.m_nec  # (n, S)
    suff = recovered(suff_num, den, n_boot=n_boot, seed=seed, min_delta=min_delta)
    nec = recovered(nec_num, den, n_boot=n_boot, seed=seed, min_delta=min_delta)
    controls = [
        {
            "components": sets[j].describe(),
            "sufficiency": _measure(*suff, j),
            "necessity": _measure(*nec, j),
        }
        for j in range(1, len(sets))
    ]
    percentile = None
    if controls:
        percentile = {
            name: {
                "value": float(percentile_rank(values[0][0], values[0][1:])),
                "ci95": list(percentile_ci(num, den, n_boot=n_boot, seed=seed)),
            }
            for name, values, num in (("sufficiency", suff, suff_num), ("necessity", nec, nec_num))
        }
    delta_lo, delta_hi = bootstrap_ci(den, n_boot=n_boot, seed=seed)
    return {
        "m_base": float(effects.m_base.mean()),
        "m_ft": float(effects.m_ft.mean()),
        "delta": {"value": float(den.mean()), "ci95": [delta_lo, delta_hi]},
        "sufficiency": _measure(*suff, 0),
        "necessity": _measure(*nec, 0),
        "controls": controls,
        "random_percentile": percentile,
    }


def validate(config: ValidateConfig) -> ValidateResult:
    """Load the pair, patch the circuit and K random controls, and score them (see module doc)."""
    start = time.perf_counter()
    circuit = Circuit.load(config.circuit)
    circuit.check_not_empty(config.circuit)
    pair = prepare_pair(config, stage="validate")
    circuit.check(pair.base.arch, pair.base.identity)
    sets = [
        Components.from_circuit(circuit, pair.base.arch),
        *control_sets(circuit, pair.base.arch, config.controls, seed=config.seed),
    ]
    loaded = time.perf_counter()
    effects = patch_effects(
        pair.base,
        pair.ft,
        pair.prepared,
        sets,
        batch_size=config.batch_size,
        ablation=config.ablation,
        mean_region=config.mean_region,
    )
    swept = time.perf_counter()
    numbers = summarize(
        effects, sets, n_boot=config.n_boot, seed=config.seed, min_delta=config.min_delta
    )
    per_doc = {
        "id": pair.prepared.ids,
        "m_base": effects.m_base,
        "m_ft": effects.m_ft,
        "m_suff": effects.m_suff[:, 0],
        "m_nec": effects.m_nec[:, 0],
        "m_suff_controls": effects.m_suff[:, 1:],
        "m_nec_controls": effects.m_nec[:, 1:],
    }
    return ValidateResult(
        **numbers,
        n_docs=len(pair.prepared),
        circuit=circuit.to_dict(),
        ablation=config.ablation,
        per_doc={k: np.asarray(v).tolist() for k, v in per_doc.items()},
        **run_record(config, pair, effects, start=start, loaded=loaded, swept=swept),
    )
