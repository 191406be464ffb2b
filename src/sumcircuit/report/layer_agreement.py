"""How far two layer rankings agree: top-k overlap (Jaccard) and rank correlation (Spearman,
Kendall's tau-b), across models of different depth, with a bootstrap over documents.

Relative depth. Layer ``l`` of an ``L``-layer model sits at relative depth ``(l + 0.5) / L`` (the
middle of its slice of the depth, so the two ends are treated alike). Two rankings of models of
depth ``L_a`` and ``L_b`` are compared on the ``L_c = min(L_a, L_b)`` layers of the shallower
model: the depth [0, 1) is cut into ``L_c`` equal bins and each layer falls in the bin holding
its relative depth, ``floor((l + 0.5) / L · L_c)`` — the identity when ``L = L_c``; a deeper
model puts at least one layer in every bin, since its layers are closer together than the bins
are wide. On those bins:

- *scores*: the mean score of the layers in a bin (what Spearman and Kendall compare);
- *top-k*: each model's own top-k layers (its ranking, on its own layers), as the set of bins
  they fall in — k layers of the deeper model may share a bin, so its set can be smaller than k;
  Jaccard = |A ∩ B| / |A ∪ B| of the two sets of bins.

The bootstrap recomputes every layer score from per-document parts
(:class:`LayerParts`) in each resample: the *same* resampled documents for both runs when they
scored the same documents (paired), each run's documents drawn on their own otherwise
(independent), both through :func:`~sumcircuit.stats.bootstrap.resample_counts`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from sumcircuit.errors import SumcircuitError
from sumcircuit.stats.bootstrap import resample_counts

__all__ = [
    "LayerParts",
    "agreement",
    "agreement_ci",
    "depth_bins",
    "jaccard",
    "jaccard_rows",
    "kendall_rows",
    "relative_depth",
    "spearman_rows",
    "to_common_depth",
    "top_k_rows",
]

#: rows of Kendall sign products computed at once (bounds memory for deep models)
_KENDALL_CHUNK = 256


def relative_depth(n_layers: int) -> np.ndarray:
    """(L,) the relative depth (l + 0.5) / L of each layer."""
    if n_layers < 1:
        raise SumcircuitError(f"a model has at least one layer; got {n_layers}")
    return (np.arange(n_layers) + 0.5) / n_layers


def depth_bins(n_layers: int, n_bins: int) -> np.ndarray:
    """(L,) the bin of each layer among ``n_bins`` equal parts of the depth (n_bins <= L)."""
    if not 1 <= n_bins <= n_layers:
        raise SumcircuitError(
            f"layers are binned into the shallower model's layers: need 1 <= {n_bins} <= {n_layers}"
        )
    return np.floor(relative_depth(n_layers) * n_bins).astype(np.int64)


def to_common_depth(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Layer scores (..., L) as (..., n_bins): the mean over the layers in each bin."""
    scores = np.asarray(scores, dtype=np.float64)
    n_layers = scores.shape[-1]
    bins = depth_bins(n_layers, n_bins)
    weights = np.zeros((n_layers, n_bins))
    weights[np.arange(n_layers), bins] = 1.0
    return scores @ (weights / weights.sum(axis=0))  # every bin holds >= 1 layer


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """(B, k) the k highest-scoring layers of each row of (B, L), ties to the lower layer (the
    order of :meth:`~sumcircuit.analysis.locate.registry.Ranking.order`)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), axis=-1, kind="stable")[..., :k]


def jaccard(a: set[int], b: set[int]) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def jaccard_rows(a: np.ndarray, b: np.ndarray, n_bins: int) -> np.ndarray:
    """(B,) Jaccard of the sets of bins in each row of a (B, k_a) and b (B, k_b)."""
    rows = np.arange(a.shape[0])[:, None]
    in_a = np.zeros((a.shape[0], n_bins), dtype=bool)
    in_b = np.zeros_like(in_a)
    in_a[rows, a] = True
    in_b[rows, b] = True
    return (in_a & in_b).sum(axis=1) / (in_a | in_b).sum(axis=1)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B,) Spearman's rho of each row pair of a, b (B, n): Pearson's r of average ranks (as
    ``scipy.stats.spearmanr``); NaN where a row is constant."""
    ra = stats.rankdata(a, axis=-1)
    rb = stats.rankdata(b, axis=-1)
    ra -= ra.mean(axis=-1, keepdims=True)
    rb -= rb.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ra * rb).sum(-1) / np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))


def kendall_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B,) Kendall's tau-b of each row pair of a, b (B, n) (as ``scipy.stats.kendalltau``):
    Σ sign(a_i − a_j)·sign(b_i − b_j) over pairs i < j, over √(untied pairs of a · of b);
    NaN where a row is constant."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    i, j = np.triu_indices(a.shape[-1], 1)
    out = np.empty(a.shape[0])
    for start in range(0, a.shape[0], _KENDALL_CHUNK):
        part = slice(start, start + _KENDALL_CHUNK)
        sa = np.sign(a[part, i] - a[part, j])  # (chunk, pairs)
        sb = np.sign(b[part, i] - b[part, j])
        den = np.sqrt((sa != 0).sum(-1) * (sb != 0).sum(-1))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[part] = (sa * sb).sum(-1) / den
    return out


@dataclass(frozen=True)
class LayerParts:
    """Each document's part of one run's layer scores: a layer's score is the mean over
    documents of ``num`` (``den`` None) or Σ num / Σ den (``num``, ``den``: (n_docs, L)), then
    its absolute value when the locator ranks by |score|. ``docs``: the document ids, in row
    order; ``data``: the data's checksum (None: not recorded)."""

    docs: tuple[str, ...]
    num: np.ndarray
    den: np.ndarray | None
    absolute: bool
    data: str | None = None

    @property
    def n_docs(self) -> int:
        return len(self.docs)

    def scores(self, counts: np.ndarray) -> np.ndarray:
        """(B, L) layer scores of the resamples ``counts`` (B, n_docs) (each row: how often each
        document is drawn; a row of ones is the full sample)."""
        total = counts @ self.num
        if self.den is None:
            values = total / self.n_docs
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = total / (counts @ self.den)  # the 1/n of both means cancels
        return np.abs(values) if self.absolute else values

    def aligned(self, docs: tuple[str, ...]) -> LayerParts:
        """The same parts with rows in the order of ``docs`` (the same set of ids)."""
        row = {doc: i for i, doc in enumerate(self.docs)}
        order = np.array([row[doc] for doc in docs])
        den = None if self.den is None else self.den[order]
        return LayerParts(docs, self.num[order], den, self.absolute, self.data)

    def same_documents(self, other: LayerParts) -> bool:
        """Whether both were computed on the same documents (ids and, where both record it,
        the data's checksum)."""
        same_data = self.data is None or other.data is None or self.data == other.data
        return same_data and set(self.docs) == set(other.docs)


def agreement(
    scores_a: np.ndarray, scores_b: np.ndarray, top_a: list[int], top_b: list[int]
) -> dict[str, Any]:
    """Top-k Jaccard, Spearman and Kendall of two rankings (layer scores, (L_a,) and (L_b,); top
    layers as each ranking picks them), on the shallower model's layers."""
    n_common = min(len(scores_a), len(scores_b))
    common_a = to_common_depth(scores_a, n_common)
    common_b = to_common_depth(scores_b, n_common)
    bins_a = {int(x) for x in depth_bins(len(scores_a), n_common)[list(top_a)]}
    bins_b = {int(x) for x in depth_bins(len(scores_b), n_common)[list(top_b)]}
    with warnings.catch_warnings():  # a constant profile has no rank correlation: NaN
        warnings.simplefilter("ignore")
        rho = stats.spearmanr(common_a, common_b).statistic
        tau = stats.kendalltau(common_a, common_b).statistic
    return {
        "n_common": n_common,
        "top_k_bins": [sorted(bins_a), sorted(bins_b)],
        "jaccard": jaccard(bins_a, bins_b),
        "spearman": float(rho),
        "kendall": float(tau),
    }


def agreement_ci(
    a: LayerParts, b: LayerParts, k: int, *, n_boot: int, seed: int, confidence: float = 0.95
) -> dict[str, Any]:
    """Percentile bootstrap CIs of :func:`agreement` over documents: ``jaccard``,
    ``spearman``, ``kendall`` -> (lo, hi) (None where every resample is undefined), and
    ``resampling``: ``paired`` (same documents, the same resample for both runs) or
    ``independent`` (each run's documents drawn on their own)."""
    if a.same_documents(b):
        b = b.aligned(a.docs)
        counts_a = counts_b = resample_counts(a.n_docs, n_boot, seed)
        resampling = "paired"
    else:
        counts_a = resample_counts(a.n_docs, n_boot, seed)
        counts_b = resample_counts(b.n_docs, n_boot, seed + 1)  # not the same draws
        resampling = "independent"
    boot_a, boot_b = a.scores(counts_a), b.scores(counts_b)  # (B, L_a), (B, L_b)
    n_common = min(boot_a.shape[1], boot_b.shape[1])
    tops = [depth_bins(boot.shape[1], n_common)[top_k_rows(boot, k)] for boot in (boot_a, boot_b)]
    common_a = to_common_depth(boot_a, n_common)
    common_b = to_common_depth(boot_b, n_common)
    values = {
        "jaccard": jaccard_rows(*tops, n_common),
        "spearman": spearman_rows(common_a, common_b),
        "kendall": kendall_rows(common_a, common_b),
    }
    alpha = 1.0 - confidence
    out: dict[str, Any] = {"resampling": resampling, "n_docs": [a.n_docs, b.n_docs]}
    for name, boot in values.items():
        finite = boot[np.isfinite(boot)]
        out[name] = (
            None
            if finite.size == 0
            else tuple(float(x) for x in np.quantile(finite, [alpha / 2, 1 - alpha / 2]))
        )
    return out
