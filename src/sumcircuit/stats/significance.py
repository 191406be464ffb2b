"""Significance tests on per-document differences: the paired Wilcoxon signed-rank test per item
and the Benjamini–Hochberg false-discovery adjustment over items."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.stats

from sumcircuit.errors import SumcircuitError

__all__ = ["bh_qvalues", "wilcoxon_p"]


def wilcoxon_p(diffs: np.ndarray) -> np.ndarray:
    """Two-sided paired Wilcoxon signed-rank p-value per column.

    diffs: (n_docs, n_items) paired differences (e.g. H_ft − H_base per document and head), or
    (n_docs,) for one item. ``scipy.stats.wilcoxon`` with its defaults (zero_method="wilcox",
    method="auto"), NaNs omitted. A column whose differences are all zero gets p = 1.0.
    Returns (n_items,) float64 (shape () for 1-D input).
    """
    arr = np.asarray(diffs, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise SumcircuitError(
            f"diffs must be a non-empty (n_docs,) or (n_docs, n_items) array; got {arr.shape}."
        )
    cols = arr.reshape(arr.shape[0], -1)
    out = np.ones(cols.shape[1], dtype=np.float64)
    informative = np.any(np.nan_to_num(cols) != 0.0, axis=0)
    if informative.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = scipy.stats.wilcoxon(cols[:, informative], axis=0, nan_policy="omit")
        out[informative] = np.nan_to_num(np.asarray(res.pvalue, dtype=np.float64), nan=1.0)
    return out.reshape(arr.shape[1:])


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values of a finite 1-D vector (fallback for old scipy)."""
    m = p.size
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty_like(q_sorted)
    q[order] = np.clip(q_sorted, 0.0, 1.0)
    return q


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values: q_(i) = min_{j ≥ i} min(1, p_(j) · m / j), p sorted.

    m is the number of non-NaN p-values; NaN entries stay NaN and do not count in m.
    Any shape; the result has the same shape.
    """
    arr = np.asarray(p, dtype=np.float64)
    flat = arr.ravel()
    ok = ~np.isnan(flat)
    if np.any((flat[ok] < 0.0) | (flat[ok] > 1.0)):
        raise SumcircuitError("p-values must lie in [0, 1]; check the test that produced them.")
    out = np.full(flat.shape, np.nan)
    if ok.any():
        fdc = getattr(scipy.stats, "false_discovery_control", None)
        out[ok] = fdc(flat[ok], method="bh") if fdc is not None else _bh(flat[ok])
    return out.reshape(arr.shape)
