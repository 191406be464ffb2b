"""Faithfulness curves: how much of the fine-tune's gain the top-n components of each locator
carry, for growing n, against random sets of the same size (the MIB circuit benchmark's view).

A *locator* (any of :data:`~sumcircuit.analysis.locate.registry.LOCATORS`) ranks components by a score
computed on the **selection** documents: the diff's ``kl``, ``js``, ``entropy`` (|ΔH|),
``weight``, ``actmag``; an attribution result (named by its method, e.g. ``atp``,
``atp-trapezoid``, ``ig-weights``); the exact patching scan (``exact``); and the position
baselines (``first-k``, ``last-k``, ``evenly-spaced``), which read no documents and are drawn on
every curve as the controls every other locator must beat. Each top-n set is patched on the
**scoring** documents, which must be disjoint from the selection documents — selecting and
scoring on the same documents is circular. The documents are compared by id within the same
data set, whatever the splits are called (:mod:`sumcircuit.analysis.locate.selection`): an
overlap is refused in one sentence unless ``--exclude-selection`` leaves those documents out
(the study does: it scores on the validation documents after its selection documents) or
``--allow-overlap`` scores on them knowingly (recorded in the result).

At each size n (layers: 1, 2, 3, 5, 8, 13, 21, ... and all; heads: 1, 2, 5, 10, 20, 50 and 100%
of them): sufficiency f(n) = Σ_d (m_patch − m_base) / Σ_d (m_ft − m_base) (the base model with
the set patched in from the fine-tuned model) and necessity g(n) = Σ_d (m_ft − m_patch) / Σ_d
(m_ft − m_base) (the fine-tuned model with the set patched from the base), each with a bootstrap
CI over documents, and the percentile of each among ``controls`` random sets of that size (the
same random sets for every locator; at most the C(N, n) sets that exist; none at n = N, whose
one set is the ceiling). Areas over x = n / N (with f(0) = 0): CPR = ∫ f dx (higher is better),
CMD = ∫ |1 − f| dx (lower is better), and the same area of necessity; CPR and CMD with bootstrap
CIs over scoring documents, and the choice of the most faithful locator with the paired CPR
difference to the runner-up (:mod:`sumcircuit.analysis.causal.areas`).

The ceiling: every sweep also patches *all* nodes of the level (layers: every head and every
MLP; heads: every head) and reports f(all) and g(all) with CIs. Weights outside the nodes (W_O,
norms, embeddings, the LM head) stay with the target model, so f(all) < 1 in general. Curves
are fractions *of m_ft − m_base*; the columns ``sufficiency_norm`` / ``necessity_norm`` give the
normalised (f − f(none)) / (f(all) − f(none)) = f / f(all), since f(none) = 0 by definition
(nothing patched is the unpatched model), and ``cpr_norm`` its area.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sumcircuit.analysis.causal.areas import area, boot_fractions, choose
from sumcircuit.analysis.causal.faithfulness_result import CURVE_COLUMNS, FaithfulnessResult
from sumcircuit.analysis.causal.patching import (
    Components,
    PatchingConfig,
    forward_counts,
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
from sumcircuit.analysis.locate.selection import (
    allow_overlap_field,
    check_disjoint,
    merged,
    overlapping,
    resolver,
)
from sumcircuit.configs import check_at_least
from sumcircuit.data.batching import Prepared
from sumcircuit.data.options import scoring_split
from sumcircuit.errors import SumcircuitError
from sumcircuit.provenance import provenance
from sumcircuit.stats import gain_check, percentile_rank, random_sets, recovered

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
    exclude_selection: bool = field(
        default=False,
        metadata={
            "help": "leave out the scoring documents that selected a ranking (default: refuse "
            "to score when there are any)"
        },
    )
    allow_overlap: bool = allow_overlap_field()

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
    """The scoring documents, checked against every ranking's selection documents (see the
    module docstring), and what the result records about both."""
    records = [r.documents() for r in found]
    overlap = overlapping(prepared.ids, prepared.data_identity, records, resolver(config))
    excluded = set(overlap) if config.exclude_selection else set()
    keep = [i for i, doc in enumerate(prepared.ids) if doc not in excluded]
    if not keep:
        raise SumcircuitError(
            f"every {config.split!r} document was used to select components; score on another "
            "--split or raise --limit beyond the selection documents"
        )
    check = check_disjoint(
        prepared.ids,
        [] if excluded else overlap,
        records,
        allow_overlap=config.allow_overlap,
        what="the rankings being scored",
        fix="score on another --split (the default, test) or pass --exclude-selection to leave "
        "them out",
    )
    # the position baselines read no document: they select nothing
    selection = sorted({(r.split, r.limit) for r in found if r.directory is not None}, key=str)
    ids = [prepared.ids[i] for i in keep]
    data = {k: prepared.data_identity.get(k) for k in ("name", "checksum")}
    info = {
        "selection": [{"split": s, "limit": n} for s, n in selection],
        "selection_records": merged(records),
        "scoring": {
            "split": config.split,
            "n_docs": len(keep),
            "excluded": len(prepared) - len(keep),
            "overlap": check["overlap"],
            "allow_overlap": check["allow_overlap"],
            "data": data,
            "ids": ids,
        },
    }
    subset = Prepared(
        encoded=[prepared.encoded[i] for i in keep],
        ids=ids,
        examples=[prepared.examples[i] for i in keep] if prepared.examples else [],
        report=prepared.report,
        data_identity=prepared.data_identity,
    )
    return subset, info


def _components(level: str, arch, keys: list[Any]) -> Components:
    if level == "layer":
        return Components.from_layers(arch, [int(k) for k in keys])
    return Components.from_heads(arch, [(int(a), int(b)) for a, b in keys])


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
    ceiling = slot(tuple(pool))  # every node of the level: f(all)
    rand: dict[int, list[int]] = {}
    for n in sizes:
        wanted = not config.control_sizes or n in config.control_sizes
        distinct = math.comb(n_total, n)  # at n = N the one set is the ceiling, no control
        count = min(config.controls, distinct) if wanted and distinct > 1 else 0
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
    suff_num = effects.m_suff - effects.m_base[:, None]
    nec_num = effects.m_ft[:, None] - effects.m_nec
    kw = dict(n_boot=config.n_boot, seed=config.seed, min_delta=config.min_delta)
    suff = recovered(suff_num, den, **kw)
    nec = recovered(nec_num, den, **kw, warn=False)
    ceil = {
        "sufficiency": _point(suff, ceiling),
        "necessity": _point(nec, ceiling),
        "none": 0.0,  # nothing patched is the unpatched model: f(none) = g(none) = 0
        "components": "every layer's write" if config.level == "layer" else "every head",
    }
    curves = _curves(found, sizes, n_total, top, rand, suff, nec, ceil)
    areas, choice = _areas(
        found, sizes, n_total, top, curves, suff_num, den, n_boot=config.n_boot, seed=config.seed
    )
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
        sources={r.name: r.source() | {"ranking": LOCATORS[r.name].ranking} for r in found},
        timing={
            "load_s": loaded - start,
            "patching_s": swept - loaded,
            "total_s": time.perf_counter() - start,
            "sets": len(keys),
            **forward_counts(effects, arch.n_layers),
        },
        provenance=provenance(
            config,
            models={"base": pair.base.identity, "finetuned": pair.ft.identity},
            data=prepared.data_identity | {"ids": list(prepared.ids)},
            seed=config.seed,
        ),
        ceiling=ceil,
        gain=gain_check(den, n_boot=config.n_boot, seed=config.seed, warn=False),
        choice=choice,
    )


def _point(measure: tuple[np.ndarray, np.ndarray, np.ndarray], j: int) -> dict[str, Any]:
    """``{"value", "ci95"}`` of set ``j`` of a ``recovered`` triple."""
    return {"value": float(measure[0][j]), "ci95": [float(measure[1][j]), float(measure[2][j])]}


def _normalised(value: float, at_all: float) -> float:
    """(f − f(none)) / (f(all) − f(none)) with f(none) = 0; NaN when f(all) is 0."""
    return value / at_all if at_all != 0.0 else float("nan")


def _curves(found, sizes, n_total, top, rand, suff, nec, ceil) -> list[dict[str, Any]]:
    """One row of :data:`CURVE_COLUMNS` per (locator, size)."""
    s_all, n_all = ceil["sufficiency"]["value"], ceil["necessity"]["value"]
    rows = []
    for ranking in found:
        for n in sizes:
            j = top[(ranking.name, n)]
            controls = rand[n]
            s_pct = percentile_rank(suff[0][j], suff[0][controls]) if controls else np.nan
            n_pct = percentile_rank(nec[0][j], nec[0][controls]) if controls else np.nan
            values = (ranking.name, n, n / n_total, suff[0][j], suff[1][j], suff[2][j], s_pct)
            values += (nec[0][j], nec[1][j], nec[2][j], n_pct)
            values += (_normalised(suff[0][j], s_all), _normalised(nec[0][j], n_all))
            row = dict(zip(CURVE_COLUMNS, values, strict=True))
            rows.append(
                {k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()}
            )
    return rows


def _areas(found, sizes, n_total, top, curves, suff_num, den, *, n_boot, seed):
    """Per locator CPR, CMD (each with a bootstrap CI over scoring documents), the necessity
    area and the normalised CPR; and the choice among the candidate locators."""
    fractions = [n / n_total for n in sizes]
    boot = boot_fractions(suff_num, den, n_boot=n_boot, seed=seed)  # (B, n_sets)
    areas, boot_cpr = {}, {}
    for ranking in found:
        rows = [r for r in curves if r["locator"] == ranking.name]
        f = np.array([r["sufficiency"] for r in rows])
        resampled = boot[:, [top[(ranking.name, n)] for n in sizes]]  # (B, n_sizes)
        boot_cpr[ranking.name] = area(fractions, resampled, 0.0)
        boot_cmd = area(fractions, np.abs(1.0 - resampled), 1.0)
        areas[ranking.name] = {  # the empty circuit: f = g = 0, |1 − f| = 1
            "cpr": float(area(fractions, f, 0.0)),
            "cpr_ci95": _interval(boot_cpr[ranking.name]),
            "cmd": float(area(fractions, np.abs(1.0 - f), 1.0)),
            "cmd_ci95": _interval(boot_cmd),
            "necessity_area": float(area(fractions, [r["necessity"] for r in rows], 0.0)),
            "cpr_norm": float(area(fractions, [r["sufficiency_norm"] for r in rows], 0.0)),
        }
    candidates = [r.name for r in found if LOCATORS[r.name].candidate]
    choice = choose(
        {k: areas[k]["cpr"] for k in candidates},
        {k: areas[k]["cmd"] for k in candidates},
        boot_cpr,
        {k: LOCATORS[k].cost_rank for k in candidates},
    )
    return areas, choice


def _interval(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.quantile(finite, [0.025, 0.975])
    return [float(lo), float(hi)]
