"""From accumulated per-document sums to the diff tables and their statistics.

Definitions (DESIGN.md "Measurements"):

- A document's value of a head metric is its region mean: sum over its region positions /
  their number. Documents with no region position are excluded (counted, never NaN).
- Head columns are means over the kept documents of those per-document values.
  ``delta_entropy`` = mean_d (H_ft − H_base); its CI is the percentile bootstrap over documents;
  ``p_value`` the paired Wilcoxon signed-rank test of the per-document ΔH; ``q_value`` the
  Benjamini–Hochberg adjustment over all L·H heads.
- Layer columns: ``kl_mean``, ``js_mean``, ``delta_entropy_mean`` are means over the layer's
  heads; ``actmag_*`` and ``cosine`` are means over all region tokens of the kept documents
  (Σ sums / Σ counts), ``actmag_rel_change`` = (actmag_ft − actmag_base) / actmag_base, ``cka``
  the linear CKA of the two models' residual streams over the same tokens.
- CIs of the layer profiles (bootstrap over documents, in ``diff.json`` → ``layer_ci95``): for
  per-head means of per-document values a plain bootstrap of the mean, for token-pooled means a
  ratio-of-sums bootstrap. CKA and weight change have no CI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sumcircuit.analysis.diff.accumulate import DiffAccumulator
from sumcircuit.errors import SumcircuitError
from sumcircuit.stats import (
    bh_qvalues,
    bootstrap_ci,
    fraction_negative_ci,
    ratio_bootstrap_ci,
    wilcoxon_p,
)

__all__ = ["HEAD_COLUMNS", "LAYER_COLUMNS", "summarize"]

HEAD_COLUMNS = [
    "layer",
    "head",
    "entropy_base",
    "entropy_ft",
    "delta_entropy",
    "delta_entropy_lo",
    "delta_entropy_hi",
    "p_value",
    "q_value",
    "norm_entropy_base",
    "norm_entropy_ft",
    "kl_base_ft",
    "kl_ft_base",
    "js",
    "weight_change",
]
LAYER_COLUMNS = [
    "layer",
    "kl_mean",
    "js_mean",
    "delta_entropy_mean",
    "actmag_base",
    "actmag_ft",
    "actmag_rel_change",
    "cosine",
    "cka",
    "weight_change",
]
SIGNIFICANCE = 0.05


def _pairs(lo: np.ndarray, hi: np.ndarray) -> list[list[float]]:
    return [[float(a), float(b)] for a, b in zip(lo, hi, strict=True)]


def summarize(
    acc: DiffAccumulator,
    head_weight: np.ndarray,
    layer_weight: np.ndarray,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], np.ndarray]:
    """Tables and summary of an accumulated diff.

    head_weight: (L, H) per-head weight change; layer_weight: (L,). Returns (heads frame, layers
    frame, summary dict, kept-document mask (n_docs,) bool).
    """
    L, H = acc.n_layers, acc.n_heads
    keep = acc.counts > 0
    n_keep = int(keep.sum())
    if n_keep == 0:
        raise SumcircuitError(
            "no document has any position in the chosen region; pick another --region or check "
            "that the data has summaries"
        )
    counts = acc.counts[keep].astype(np.float64)
    per_doc = {m: s[keep] / counts[:, None, None] for m, s in acc.head_sums.items()}  # (n, L, H)
    means = {m: v.mean(axis=0).reshape(-1) for m, v in per_doc.items()}  # (L*H,)
    delta = (per_doc["entropy_ft"] - per_doc["entropy_base"]).reshape(n_keep, L * H)
    lo, hi = bootstrap_ci(delta, n_boot=n_boot, seed=seed)
    p = wilcoxon_p(delta)
    q = bh_qvalues(p)
    mean_delta = delta.mean(axis=0)
    layer_idx, head_idx = np.divmod(np.arange(L * H), H)  # row r = layer * H + head
    heads = pd.DataFrame(
        {
            "layer": layer_idx,
            "head": head_idx,
            "entropy_base": means["entropy_base"],
            "entropy_ft": means["entropy_ft"],
            "delta_entropy": mean_delta,
            "delta_entropy_lo": np.atleast_1d(lo),
            "delta_entropy_hi": np.atleast_1d(hi),
            "p_value": np.atleast_1d(p),
            "q_value": np.atleast_1d(q),
            "norm_entropy_base": means["norm_entropy_base"],
            "norm_entropy_ft": means["norm_entropy_ft"],
            "kl_base_ft": means["kl_base_ft"],
            "kl_ft_base": means["kl_ft_base"],
            "js": means["js"],
            "weight_change": np.asarray(head_weight, dtype=np.float64).reshape(-1),
        },
        columns=HEAD_COLUMNS,
    )

    sums = {m: s[keep] for m, s in acc.layer_sums.items()}  # (n, L)
    tokens = counts[:, None].repeat(L, axis=1)  # (n, L)
    total = tokens.sum(axis=0)
    actmag_base = sums["actmag_base"].sum(axis=0) / total
    actmag_ft = sums["actmag_ft"].sum(axis=0) / total
    by_layer = {m: per_doc[m].mean(axis=2) for m in ("kl_base_ft", "js")}  # (n, L)
    delta_layer = delta.reshape(n_keep, L, H).mean(axis=2)
    layers = pd.DataFrame(
        {
            "layer": np.arange(L),
            "kl_mean": by_layer["kl_base_ft"].mean(axis=0),
            "js_mean": by_layer["js"].mean(axis=0),
            "delta_entropy_mean": delta_layer.mean(axis=0),
            "actmag_base": actmag_base,
            "actmag_ft": actmag_ft,
            "actmag_rel_change": (actmag_ft - actmag_base) / actmag_base,
            "cosine": sums["cosine"].sum(axis=0) / total,
            "cka": [c.value() if c.n else np.nan for c in acc.cka],
            "weight_change": np.asarray(layer_weight, dtype=np.float64),
        },
        columns=LAYER_COLUMNS,
    )
    boot = {"n_boot": n_boot, "seed": seed}
    layer_ci = {
        "kl_mean": _pairs(*bootstrap_ci(by_layer["kl_base_ft"], **boot)),
        "js_mean": _pairs(*bootstrap_ci(by_layer["js"], **boot)),
        "delta_entropy_mean": _pairs(*bootstrap_ci(delta_layer, **boot)),
        "actmag_base": _pairs(*ratio_bootstrap_ci(sums["actmag_base"], tokens, **boot)),
        "actmag_ft": _pairs(*ratio_bootstrap_ci(sums["actmag_ft"], tokens, **boot)),
        "actmag_rel_change": _pairs(
            *ratio_bootstrap_ci(
                sums["actmag_ft"] - sums["actmag_base"], sums["actmag_base"], **boot
            )
        ),
        "cosine": _pairs(*ratio_bootstrap_ci(sums["cosine"], tokens, **boot)),
    }
    frac, frac_ci = fraction_negative_ci(delta, **boot)
    ranked = layers.sort_values(["kl_mean", "layer"], ascending=[False, True], kind="stable")
    summary = {
        "n_docs": n_keep,
        "n_tokens": int(counts.sum()),
        "excluded_docs": int(acc.n_docs - n_keep),
        "frac_heads_entropy_decreased": frac,
        "frac_heads_entropy_decreased_ci95": list(frac_ci),
        "frac_heads_sig_decreased": float(np.mean((q < SIGNIFICANCE) & (mean_delta < 0))),
        "frac_heads_sig_increased": float(np.mean((q < SIGNIFICANCE) & (mean_delta > 0))),
        "layers_ranked": [int(x) for x in ranked["layer"]],
        "layer_ci95": layer_ci,
    }
    return heads, layers, summary, keep
