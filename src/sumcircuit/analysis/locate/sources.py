"""The locators read from a stage's result: the diff's change measures, each attribution
method, and the exact patching scan (registered in :mod:`sumcircuit.analysis.locate.registry`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sumcircuit.analysis.causal.attribute import AttributionResult
from sumcircuit.analysis.causal.attribution import METHODS, RENAMED_METHODS
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
    "ig-direct": "K forward and backward passes per batch (--ig-steps)",
    "ig-weights": "K forward and backward passes per batch (--ig-steps)",
}
_HELP = {
    "atp": "the atp estimate of each component's sufficiency (gradient at the base model)",
    "ig-direct": "each component's direct effect (every site held on the activation path): "
    "indirect effects through later sites are cut, so it is never the study's circuit",
    "ig-weights": "the gradient averaged over the path of weights (no completeness)",
}
for _method in METHODS:
    register_locator(
        _method,
        source="attribution",
        stage=RunLayout.attribute(_method),
        cost=_COSTS[_method],
        cost_rank=2 if _method.startswith("ig-") else 1,
        candidate=_method != "ig-direct",
        help=_HELP[_method],
    )(_patching_scores)


@register_locator(
    "atp-trapezoid",
    source="attribution",
    stage=RunLayout.attribute("atp"),
    cost="free: the mean of the two end gradients atp already computes",
    cost_rank=1,
    help="the trapezoid estimate: Δa · ½ (∂m/∂a at base + at fine-tuned), from an atp result",
)
def _trapezoid(result: AttributionResult, level: str, shape: Shape, name: str) -> pd.Series:
    return result.trapezoid(level)


register_locator(
    "exact",
    source="exact",
    stage=RunLayout.EXACT,
    cost="one patched forward per component per batch",
    cost_rank=3,
    help="exact patching: the sufficiency of each component alone",
)(_patching_scores)


def attribution_method(directory: str) -> str:
    """The method an attribution directory holds (its locator's name; a renamed method by its
    current name)."""
    method = AttributionResult.load(directory).method
    return RENAMED_METHODS.get(method, method)
