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

The ceiling: the sweep also patches *all* nodes of the circuit's level (layer circuit: every
layer's write to the residual stream; head circuit: every head) and reports f(all), the
sufficiency and necessity of patching all of them, with CIs. Weights outside the nodes (the
embeddings, final norm and LM head; for heads also W_O, the norms and the MLPs) stay with the
target model, so f(all) < 1 in general. ``sufficiency`` and ``necessity``
are fractions *of m_ft − m_base*; ``normalised`` gives (f − f(none)) / (f(all) − f(none)) =
Σ_d num_d / Σ_d num_all,d with f(none) = 0 by definition (nothing patched is the unpatched
model), with a ratio bootstrap CI.

The scoring documents must not be the circuit's selection documents (those its ranking was
computed on and, for ``--score faithful``, the faithfulness curves that chose its locator; by
id within the same data set, whatever the split names): an overlap is refused in one sentence
unless ``--allow-overlap``, which the result records.
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
from sumcircuit.analysis.locate.selection import (
    allow_overlap_field,
    check_disjoint,
    overlapping,
    resolver,
)
from sumcircuit.configs import check_at_least
from sumcircuit.errors import ConfigError
from sumcircuit.models.archs import Arch
from sumcircuit.results import StageResult
from sumcircuit.stats import (
    gain_check,
    percentile_ci,
    percentile_rank,
    random_sets,
    ratio_bootstrap_ci,
    recovered,
)

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
    allow_overlap: bool = allow_overlap_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.circuit:
            raise ConfigError("circuit", "{key} is required: the circuit JSON written by locate")
        check_at_least(self, ("controls",), 0)


# -- controls ------------------------------------------------------------------------------------
def every_node(circuit: Circuit, arch: Arch) -> Components:
    """All nodes of the circuit's level: every layer's write (layer), or every head (head)."""
    if circuit.level == "layer":
        return Components.from_layers(arch, list(range(arch.n_layers)))
    every = [(layer, head) for layer in range(arch.n_layers) for head in range(arch.n_heads)]
    return Components.from_heads(arch, every)


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
    """What ``validate`` found. ``sufficiency``/``necessity``: ``{"value", "ci95": [lo, hi]}``,
    fractions of m_ft − m_base.

    ``controls``: one dict per random set (``components``, ``sufficiency``, ``necessity``);
    ``random_percentile``: per measure ``{"value", "ci95"}`` (None without controls);
    ``ceiling``: f(all) per measure (every node of the level patched) and f(none) = 0;
    ``normalised``: per measure (f − f(none)) / (f(all) − f(none)); ``delta``: m_ft − m_base
    with its CI and the flags ``negative`` and ``ci_spans_zero``
    (:func:`sumcircuit.stats.gain_check`); ``documents``: the scoring documents' split and
    count, and their ``overlap`` with the circuit's selection documents (``allow_overlap``);
    ``per_doc``: ids and per-document m of base, ft, circuit-, control- and all-patched runs.
    Results written before the ceiling existed load with it empty.
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
    ceiling: dict[str, Any] = field(default_factory=dict)
    normalised: dict[str, Any] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per component set (fractions of m_ft − m_base): the circuit first, then
        the controls, then ``all`` (every node of the level) when recorded."""
        rows = [{"set": "circuit", **_flat(self.sufficiency, self.necessity)}]
        rows += [
            {"set": f"control{i}", **_flat(c["sufficiency"], c["necessity"])}
            for i, c in enumerate(self.controls)
        ]
        if self.ceiling:
            rows.append(
                {"set": "all", **_flat(self.ceiling["sufficiency"], self.ceiling["necessity"])}
            )
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
    """Sufficiency, necessity, controls, percentiles and the ceiling from a sweep whose set 0
    is the circuit, the last set every node of the level and those between the controls."""
    den = effects.m_ft - effects.m_base  # (n,)
    suff_num = effects.m_suff - effects.m_base[:, None]  # (n, S)
    nec_num = effects.m_ft[:, None] - effects.m_nec  # (n, S)
    suff = recovered(suff_num, den, n_boot=n_boot, seed=seed, min_delta=min_delta)
    nec = recovered(nec_num, den, n_boot=n_boot, seed=seed, min_delta=min_delta, warn=False)
    last = len(sets) - 1
    controls = [
        {
            "components": sets[j].describe(),
            "sufficiency": _measure(*suff, j),
            "necessity": _measure(*nec, j),
        }
        for j in range(1, last)
    ]
    percentile = None
    if controls:
        percentile = {
            name: {
                "value": float(percentile_rank(values[0][0], values[0][1:last])),
                "ci95": list(percentile_ci(num[:, :last], den, n_boot=n_boot, seed=seed)),
            }
            for name, values, num in (("sufficiency", suff, suff_num), ("necessity", nec, nec_num))
        }
    normalised = {}
    for name, num in (("sufficiency", suff_num), ("necessity", nec_num)):
        at_all = num[:, last].sum()
        lo, hi = ratio_bootstrap_ci(num[:, 0], num[:, last], n_boot=n_boot, seed=seed)
        value = float(num[:, 0].sum() / at_all) if at_all != 0.0 else float("nan")
        normalised[name] = {"value": value, "ci95": [lo, hi]}
    return {
        "m_base": float(effects.m_base.mean()),
        "m_ft": float(effects.m_ft.mean()),
        "delta": gain_check(den, n_boot=n_boot, seed=seed, warn=False),
        "sufficiency": _measure(*suff, 0),
        "necessity": _measure(*nec, 0),
        "controls": controls,
        "random_percentile": percentile,
        "ceiling": {
            "sufficiency": _measure(*suff, last),
            "necessity": _measure(*nec, last),
            "none": 0.0,  # nothing patched is the unpatched model
            "components": sets[last].describe(),
        },
        "normalised": normalised,
    }


def scoring_check(config: ValidateConfig, circuit: Circuit, ids: list[str], data: dict) -> dict:
    """Refuse to score ``circuit`` on its own selection documents (see the module docstring);
    what the result records about the scoring documents."""
    if not circuit.documents:
        log.warning(
            "the circuit %r records no selection documents (written by hand or before they were "
            "recorded): cannot check that validate scores on other documents",
            config.circuit,
        )
    overlap = overlapping(ids, data, circuit.documents, resolver(config))
    check = check_disjoint(
        ids,
        overlap,
        circuit.documents,
        allow_overlap=config.allow_overlap,
        what=f"the circuit {config.circuit!r}",
        fix="validate on another --split (the study uses test) or other documents",
    )
    return {"split": config.split, "n_docs": len(ids), **check}


def validate(config: ValidateConfig) -> ValidateResult:
    """Load the pair, patch the circuit, K random controls and every node, and score them
    (see the module doc)."""
    start = time.perf_counter()
    circuit = Circuit.load(config.circuit)
    circuit.check_not_empty(config.circuit)
    pair = prepare_pair(config, stage="validate")
    circuit.check(pair.base.arch, pair.base.identity)
    documents = scoring_check(config, circuit, pair.prepared.ids, pair.prepared.data_identity)
    sets = [
        Components.from_circuit(circuit, pair.base.arch),
        *control_sets(circuit, pair.base.arch, config.controls, seed=config.seed),
        every_node(circuit, pair.base.arch),
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
        "m_suff_controls": effects.m_suff[:, 1:-1],
        "m_nec_controls": effects.m_nec[:, 1:-1],
        "m_suff_all": effects.m_suff[:, -1],
        "m_nec_all": effects.m_nec[:, -1],
    }
    record = run_record(config, pair, effects, start=start, loaded=loaded, swept=swept)
    record["provenance"]["data"]["ids"] = list(pair.prepared.ids)
    return ValidateResult(
        **numbers,
        n_docs=len(pair.prepared),
        circuit=circuit.to_dict(),
        ablation=config.ablation,
        per_doc={k: np.asarray(v).tolist() for k, v in per_doc.items()},
        documents=documents,
        **record,
    )
