"""Does the attribution agree with exact patching? Pearson, Kendall and top-k overlap.

:func:`agreement` compares two score vectors over the same components (pure, no files).
:func:`attribution_vs_exact` compares an attribution result with an exact *layer* scan: the
scan's sufficiency of each layer against the attribution's estimate of it, the estimate
normalised over the scan's own documents (``Σ_d est_d / Σ_d (m_ft,d − m_base,d)`` over them,
from the attribution's per-document values) when they cover those documents — so a scan of a
few selection documents is compared with the estimate on the same documents, not on all of
them. ``benchmarks/attribution_bench.py``, the study summary and the report's scatter use these.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from sumcircuit.analysis.causal.attribute import AttributionResult
from sumcircuit.analysis.causal.exact import ExactResult

# Pearson r with exact patching below which an attribution's layer ranking is flagged as not
# following it: measured, atp reaches 0.90 on both smollm2-135m fine-tunes and 0.36-0.42 on
# gemma3-270m's, where ig-weights reaches 0.73-0.82 (benchmarks/RESULTS.md).
TRUSTED_PEARSON = 0.7


def agreement(exact: np.ndarray, estimate: np.ndarray, k: int = 3) -> dict[str, float]:
    """Pearson r, Kendall tau-b and top-k overlap of ``estimate`` with ``exact``, both (n,).

    Top-k overlap = |top-k of exact ∩ top-k of estimate| / min(k, n), by signed score (the
    largest first, ties by position). Pairs with a non-finite value are left out; a
    correlation is NaN when fewer than 2 pairs remain or either side is constant.
    """
    exact = np.asarray(exact, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if exact.shape != estimate.shape or exact.ndim != 1:
        raise ValueError(f"two score vectors of one length, got {exact.shape} and {estimate.shape}")
    keep = np.isfinite(exact) & np.isfinite(estimate)
    x, y = exact[keep], estimate[keep]
    varied = len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0
    pearson = float(stats.pearsonr(x, y)[0]) if varied else float("nan")
    kendall = float(stats.kendalltau(x, y)[0]) if varied else float("nan")
    top = min(k, len(x))
    if top:
        first = set(np.argsort(-x, kind="stable")[:top])
        overlap = len(first & set(np.argsort(-y, kind="stable")[:top])) / top
    else:
        overlap = float("nan")
    return {"pearson": pearson, "kendall": kendall, f"top{k}_overlap": overlap}


def _estimate_on(attribution: AttributionResult, doc_ids: list[str]) -> pd.Series | None:
    """The attribution's layer sufficiency normalised over ``doc_ids`` (None when its
    per-document values do not cover them)."""
    per_doc = attribution.per_doc
    if per_doc is None or not doc_ids or not set(doc_ids) <= set(per_doc["doc"]):
        return None
    rows = per_doc[(per_doc["component"] == "layer") & per_doc["doc"].isin(doc_ids)]
    docs = rows.drop_duplicates("doc")
    gain = float((docs["m_ft"] - docs["m_base"]).sum())
    return rows.groupby("layer")["sufficiency"].sum() / gain


def attribution_vs_exact(
    attribution: AttributionResult, scan: ExactResult, k: int = 3
) -> dict[str, Any]:
    """The attribution's layer scores against an exact layer scan's (sufficiency: the base
    model with one layer patched in from the fine-tuned model), with :func:`agreement` and the
    per-layer values (``layers``, ``exact``, ``attribution``); ``trusted`` says whether Pearson r
    reaches :data:`TRUSTED_PEARSON`."""
    exact = scan.scores("layer")
    estimate = _estimate_on(attribution, scan.doc_ids)
    n_estimate = len(scan.doc_ids)
    if estimate is None:  # an older scan or attribution: the estimate on its own documents
        estimate, n_estimate = attribution.scores("layer"), attribution.n_docs
    both = pd.DataFrame({"exact": exact, "attribution": estimate}).sort_index()
    agree = agreement(both["exact"].to_numpy(), both["attribution"].to_numpy(), k)
    return {
        "level": "layer",
        "n_docs": scan.n_docs,
        "attribution_n_docs": n_estimate,
        "method": attribution.method,
        "direction": "sufficiency",
        **agree,
        "trusted": bool(agree["pearson"] >= TRUSTED_PEARSON),
        "layers": [int(layer) for layer in both.index],
        "exact": [float(v) for v in both["exact"]],
        "attribution": [float(v) for v in both["attribution"]],
    }
