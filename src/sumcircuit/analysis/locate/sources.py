"""The locators read from a stage's result: the diff's change measures, each attribution
method, and the exact patching scan (registered in :mod:`sumcircuit.analysis.locate.registry`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sumcircuit.analysis.causal.attribute import AttributionResult
from sumcircuit.analysis.causal.attribution import METHODS
from sumcircuit.analysis.causal.exact import ExactResult
from sumcircuit.analysis.diff.result import DiffResult
from sumcircuit.analysis.locate.registry import SOURCE_LOADERS, Shape, register_locator
from sumcircuit.layout import RunLayout

SOURCE_LOADERS.update(
    diff=DiffResult.load, attribution=AttributionResult.load, exact=ExactResult.load
)


def _diff_measure(diff: DiffResult, level: str, shape: Shape, name: str) -> pd.Series:
    return diff.scores(level, name)


_DIFF = {
    "kl": ("signed", "layer: mean KL(P_base ‖ Q_ft) over its heads; head: its KL"),
    "js": ("signed", "Jensen–Shannon divergence of the attention, as kl"),
    "entropy": ("absolute", "|mean ΔH| of the attention entropy"),
    "weight": ("signed", "relative weight change ‖W_ft − W_base‖ / ‖W_base‖"),
    "actmag": ("absolute", "|relative change of the residual stream's norm| (layers only)"),
}
for _name, (_ranking, _help) in _DIFF.items():
    register_locator(
        _name,
        source="diff",
        ranking=_ranking,
        stage=RunLayout.DIFF,
        cost="free: read from the diff",
        levels=("layer",) if _name == "actmag" else ("layer", "head"),
        # only the entropy change carries per-head p-values (Wilcoxon, BH q)
        rules=("topk", "zscore", "fdr") if _name == "entropy" else ("topk", "zscore"),
        help=_help,
    )(_diff_measure)


def _patching_scores(result: Any, level: str, shape: Shape, name: str) -> pd.Series:
    return result.scores(level)


_COSTS = {
    "atp": "one forward and backward pass of each model per batch",
    "ig-activations": "K forward and backward passes per batch (--ig-steps)",
    "ig-weights": "K forward and backward passes per batch (--ig-steps)",
}
for _method in METHODS:
    register_locator(
        _method,
        source="attribution",
        stage=RunLayout.attribute(_method),
        cost=_COSTS[_method],
        help=f"the {_method} attribution estimate of each component's sufficiency",
    )(_patching_scores)

register_locator(
    "exact",
    source="exact",
    stage=RunLayout.EXACT,
    cost="one patched forward per component per batch",
    help="exact patching: the sufficiency of each component alone",
)(_patching_scores)


def attribution_method(directory: str) -> str:
    """The method an attribution directory holds (its locator's name)."""
    return AttributionResult.load(directory).method
