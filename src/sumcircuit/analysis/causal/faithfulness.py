"""Faithfulness curves: how much of the fine-tune's gain the top-n components of each locator
carry, for growing n, against random sets of the same size (the MIB circuit benchmark's view).

A *locator* (any of :data:`~sumcircuit.analysis.locate.registry.LOCATORS`) ranks components by a score
computed on the **selection** documents: the diff's ``kl``, ``js``, ``entropy`` (|ΔH|),
``weight``, ``actmag``; an attribution result (named by its method, e.g. ``atp``,
``ig-weights``); the exact patching scan (``exact``); and the position baselines (``first-k``,
``last-k``, ``evenly-spaced``), which read no documents and are drawn on every curve as the
controls every other locator must beat. Each top-n set is patched on the **scoring**
documents, which must be disjoint from the selection documents — selecting and scoring on the
same documents is circular. By default scoring uses another split (``test``) than the sources
were computed on; on the same split the selection documents are left out.

At each size n (layers: 1, 2, 3, 5, 8, 13, 21, ... and all; heads: 1, 2, 5, 10, 20, 50 and 100%
of them): sufficiency f(n) = Σ_d (m_patch − m_base) / Σ_d (m_ft − m_base) (the base model with
the set patched in from the fine-tuned model) and necessity g(n) = Σ_d (m_ft − m_patch) / Σ_d
(m_ft − m_base) (the fine-tuned model with the set patched from the base), each with a bootstrap
CI over documents, and the percentile of each among ``controls`` random sets of that size (the
same random sets for every locator). Areas over x = n / N (with f(0) = 0): CPR = ∫ f dx (higher
is better), CMD = ∫ |1 − f| dx (lower is better), and the same area of necessity.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sumcircuit.analysis.causal.faithfulness_result import CURVE_COLUMNS, FaithfulnessResult
from sumcircuit.analysis.causal.patching import (
    Components,
    PatchingConfig,
    patch_effects,
    prepare_pair,
)
from sumcircuit.analysis.locate.registry import (
    LOCATORS,
    Ranking,
    Shape,
    locator,
    names,
    sources_field,
)
from sumcircuit.configs import check_at_least
from sumcircuit.data.batching import Prepared
from sumcircuit.data.options import scoring_split
from sumcircuit.data.sources import load_dataset
from sumcircuit.errors import SumcircuitError
from sumcircuit.provenance import provenance
from sumcircuit.stats import percentile_rank, random_sets, recovered

log = logging.getLogger(__name__)

HEAD_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class FaithfulnessConfig(PatchingConfig):
    split: str = scoring_split()
    level: Literal["layer", "head"] = field(
        default="layer", metadata={"help": "rank whole layers or single heads"}
    )
    diff: str | None = field(
        default=None,
        metadata={"help": "diff directory: the kl, js, entropy, weight, actmag locators"},
    )
    sources: dict[str, str] = sources_field()
    attribution: list[str] = field(
        default_factory=list, metadata={"help": "deprecated: use --sources METHOD=DIR"}
    )
    scan: str | None = field(default=None, metadata={"help": "deprecated: use --sources exact=DIR"})
    locators: list[str] = field(
        default_factory=list,
        metadata={
            "help": "locators to draw (default: every one the sources give, and the position "
            "baselines)"
        },
    )
    sizes: list[int] = field(
        default_factory=list, metadata={"help": "circuit sizes (default: the standard schedule)"}
    )
    controls: int = field(default=20, metadata={"help": "random sets per size"})
    control_sizes: list[int] = field(
        default_factory=list,
        metadata={"help": "sizes that get random sets (default: every size; fewer is cheaper)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self, ("controls",), 0)
        check_at_least(self, ("min_delta",), 0)
        self._fold_deprecated()
        for name in [*self.sources, *self.locators]:
            locator(name)  # an unknown name: one sentence listing the valid ones
        if not (self.diff or self.sources):
            raise SumcircuitError(
                "faithfulness needs at least one source of rankings: --diff or --sources "
                "LOCATOR=DIR"
            )

    def _fold_deprecated(self) -> None:
        """``--attribution DIR`` and ``--scan DIR`` into ``--sources``, with a one-line message."""
        if self.attribution:
            from sumcircuit.analysis.locate.sources import attribution_method

            found = {attribution_method(d): d for d in self.attribution}
            log.warning("--attribution is deprecated; use --sources %s", _pairs(found))
            self.sources, self.attribution = {**self.sources, **found}, []
        if self.scan:
            log.warning("--scan is deprecated; use --sources exact=%s", self.scan)
            self.sources, self.scan = {**self.sources, "exact": self.scan}, None

    def wanted(self) -> list[str]:
        """The locators to draw: ``locators``, or every one the sources give (the diff's, then
        each source's, in registry order) and the position baselines."""
        if self.locators:
            return list(self.locators)
        return [
            name
            for name in names()
            if (LOCATORS[name].source == "diff" and self.diff)
            or name in self.sources
            or LOCATORS[name].source == "none"
        ]


def _pairs(mapping: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in mapping.items())


def default_sizes(n: int, level: str) -> list[int]:
    """Layers: 1, 2, 3, 5, 8, 13, ... below n, then n. Heads: 1..100% of n, at least 1."""
    if level == "head":
        return sorted({max(1, round(f * n)) for f in HEAD_FRACTIONS})
    sizes, a, b = [], 1, 2
    while a < n:
        sizes.append(a)
        a, b = b, a + b
    return [*sizes, n]


def rankings(
    config: FaithfulnessConfig, shape: Shape, models: dict[str, Any] | None = None
) -> list[Ranking]:
    """The ranking of every locator ``config`` draws (see :meth:`FaithfulnessConfig.wanted`);
    a locator without a ranking at ``config.level`` is left out unless asked for by name.
    With ``models`` (the pair that will be patched), each ranking must have been computed on
    that pair (:meth:`Ranking.check_models`)."""
    found = []
    for name in config.wanted():
        spec = locator(name)
        if config.level not in spec.levels and not config.locators:
            continue
        directory = config.diff if spec.source == "diff" else config.sources.get(name)
        if spec.source != "none" and directory is None:
            given = ["diff"] * bool(config.diff) + list(config.sources)
            raise SumcircuitError(
                f"no source gives the locator {name}; pass --sources {name}=DIR (given: "
                f"{', '.join(given) or 'none'})"
            )
        ranking = spec.rank(config.level, directory, shape)
        if models is not None:
            ranking.check_models(models, "models faithfulness patches")
        found.append(ranking)
    return found


def scoring_documents(
    prepared: Prepared, config: FaithfulnessConfig, found: list[Ranking]
) -> tuple[Prepared, dict[str, Any]]:
    """The scoring documents minus every selection document; what was excluded and why."""
    excluded: set[str] = set()
    limits = [r.limit for r in found if r.split == config.split]
    if limits:  # the selection documents were the first `limit` of the same split
        columns = {"document_field": config.document_field, "summary_field": config.summary_field}
        on_split = load_dataset(config.data, **columns).split(config.split)
        none_means_all = [len(on_split) if n is None else n for n in limits]
        excluded = {e.id for e in on_split[: max(none_means_all)]}
    keep = [i for i, doc in enumerate(prepared.ids) if doc not in excluded]
    if not keep:
        raise SumcircuitError(
            f"every {config.split!r} document was used to select components; score on another "
            "--split or raise --limit beyond the selection documents"
        )
    # the position baselines read no document: they select nothing
    selection = sorted({(r.split, r.limit) for r in found if r.directory is not None}, key=str)
    info = {
        "selection": [{"split": s, "limit": n} for s, n in selection],
        "scoring": {
            "split": config.split,
            "n_docs": len(keep),
            "excluded": len(prepared) - len(keep),
        },
    }
    subset = Prepared(
        encoded=[prepared.encoded[i] for i in keep],
        ids=[prepared.ids[i] for i in keep],
        examples=[prepared.examples[i] for i in keep] if prepared.examples else [],
        report=prepared.report,
        data_identity=prepared.data_identity,
    )
    return subset, info


def _components(level: str, arch, keys: list[Any]) -> Components:
    if level == "layer":
        return Components.from_layers(arch, [int(k) for k in keys])
    return Components.from_heads(arch, [(int(a), int(b)) for a, b in keys])


def _area(fractions: list[float], values: list[float], at_zero: float) -> float:
    """Trapezoid area over x in [0, max fraction], the curve starting at ``at_zero``."""
    return float(np.trapezoid([at_zero, *values], [0.0, *fractions]))


def faithfulness(config: FaithfulnessConfig) -> FaithfulnessResult:
    """Curves of every locator on the scoring documents (see the module docstring)."""
    start = time.perf_counter()
    pair = prepare_pair(config, stage="faithfulness")
    arch = pair.base.arch
    patched = {"base": pair.base.identity, "finetuned": pair.ft.identity}
    found = rankings(config, Shape(arch.n_layers, arch.n_heads), patched)  # before any patching
    prepared, documents = scoring_documents(pair.prepared, config, found)
    pool = (
        list(range(arch.n_layers))
        if config.level == "layer"
        else [(layer, head) for layer in range(arch.n_layers) for head in range(arch.n_heads)]
    )
    n_total = len(pool)
    sizes = sorted(set(config.sizes)) if config.sizes else default_sizes(n_total, config.level)
    if sizes[0] < 1 or sizes[-1] > n_total:
        raise SumcircuitError(f"--sizes must lie in 1..{n_total} for {config.level}s, got {sizes}")
    # Every distinct set once: locators' top-n sets and the random sets of each size.
    keys: list[tuple[Any, ...]] = []
    index: dict[tuple[Any, ...], int] = {}

    def slot(members: tuple[Any, ...]) -> int:
        members = tuple(sorted(members))
        if members not in index:
            index[members] = len(keys)
            keys.append(members)
        return index[members]

    top = {(r.name, n): slot(tuple(r.top(n))) for r in found for n in sizes}
    rand: dict[int, list[int]] = {}
    for n in sizes:
        wanted = not config.control_sizes or n in config.control_sizes
        count = min(config.controls, math.comb(n_total, n) - 1) if wanted else 0
        picks = random_sets(pool, n, count, (), seed=config.seed + n) if count > 0 else []
        rand[n] = [slot(tuple(p)) for p in picks]
    loaded = time.perf_counter()
    effects = patch_effects(
        pair.base,
        pair.ft,
        prepared,
        [_components(config.level, arch, list(k)) for k in keys],
        batch_size=config.batch_size,
    )
    swept = time.perf_counter()
    den = effects.m_ft - effects.m_base
    kw = dict(n_boot=config.n_boot, seed=config.seed, min_delta=config.min_delta)
    suff = recovered(effects.m_suff - effects.m_base[:, None], den, **kw)
    nec = recovered(effects.m_ft[:, None] - effects.m_nec, den, **kw)
    curves, areas = [], {}
    for ranking in found:
        rows = []
        for n in sizes:
            j = top[(ranking.name, n)]
            controls = rand[n]
            s_pct = percentile_rank(suff[0][j], suff[0][controls]) if controls else np.nan
            n_pct = percentile_rank(nec[0][j], nec[0][controls]) if controls else np.nan
            rows.append(
                dict(
                    zip(
                        CURVE_COLUMNS,
                        (ranking.name, n, n / n_total, suff[0][j], suff[1][j], suff[2][j], s_pct)
                        + (nec[0][j], nec[1][j], nec[2][j], n_pct),
                        strict=True,
                    )
                )
            )
        rows = [
            {k: (float(v) if isinstance(v, np.floating) else v) for k, v in r.items()} for r in rows
        ]
        fractions = [r["fraction"] for r in rows]
        areas[ranking.name] = {  # the empty circuit: f = g = 0, |1 − f| = 1
            "cpr": _area(fractions, [r["sufficiency"] for r in rows], 0.0),
            "cmd": _area(fractions, [abs(1.0 - r["sufficiency"]) for r in rows], 1.0),
            "necessity_area": _area(fractions, [r["necessity"] for r in rows], 0.0),
        }
        curves += rows
    random_rows = [
        {
            "size": n,
            "fraction": n / n_total,
            "n_sets": len(rand[n]),
            "sufficiency_mean": float(np.mean(suff[0][rand[n]])) if rand[n] else np.nan,
            "sufficiency_p05": float(np.percentile(suff[0][rand[n]], 5)) if rand[n] else np.nan,
            "sufficiency_p95": float(np.percentile(suff[0][rand[n]], 95)) if rand[n] else np.nan,
            "necessity_mean": float(np.mean(nec[0][rand[n]])) if rand[n] else np.nan,
            "necessity_p05": float(np.percentile(nec[0][rand[n]], 5)) if rand[n] else np.nan,
            "necessity_p95": float(np.percentile(nec[0][rand[n]], 95)) if rand[n] else np.nan,
        }
        for n in sizes
    ]
    return FaithfulnessResult(
        level=config.level,
        n_components=n_total,
        curves=curves,
        random=random_rows,
        areas=areas,
        documents=documents,
        sources={r.name: r.source() for r in found},
        timing={
            "load_s": loaded - start,
            "patching_s": swept - loaded,
            "total_s": time.perf_counter() - start,
            "sets": len(keys),
            "forwards": effects.n_forwards,
        },
        provenance=provenance(
            config,
            models={"base": pair.base.identity, "finetuned": pair.ft.identity},
            data=prepared.data_identity,
            seed=config.seed,
        ),
    )
