"""Seeded, vectorised bootstrap over documents: CIs of means and ratios of means, paired
differences, the fraction of items below zero, recovered fractions and top-k support.

Every resampling function draws its document indices as
``numpy.random.default_rng(seed).integers(0, n, size=(n_boot, n))``, so a 2-D call
(n_docs, n_items) uses the *same* resampled documents for every item, and equals the 1-D call
on each column with the same seed. Means over a resample are computed as
``counts @ values / n`` with ``counts`` (n_boot, n_docs) the multiplicity of each document in
each resample: one matrix product instead of an (n_boot, n_docs, n_items) gather.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from sumcircuit.errors import SumcircuitError
from sumcircuit.stats.power import wilson_interval

__all__ = [
    "PairedDiff",
    "bootstrap_ci",
    "fraction_negative_ci",
    "gain_check",
    "paired_bootstrap_diff",
    "ratio_bootstrap_ci",
    "recovered",
    "resample_counts",
    "topk_bootstrap",
]

log = logging.getLogger(__name__)

# Upper bound on the elements of one gathered (chunk, n_docs, n_items) block for a generic stat.
_GATHER_BUDGET = 2**24


class PairedDiff(NamedTuple):
    """Paired bootstrap difference of two arms scored on the same examples (a − b)."""

    mean_diff: float
    ci95: tuple[float, float]
    p_value: float
    n: int


def _as_samples(values: object, name: str, *, ndim: tuple[int, ...] = (1, 2)) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim not in ndim:
        raise SumcircuitError(
            f"{name} must be a {' or '.join(f'{d}-D' for d in ndim)} array with documents "
            f"along the first axis; got shape {arr.shape}."
        )
    if arr.shape[0] == 0:
        raise SumcircuitError(f"{name} is empty; pass at least one document.")
    if not np.all(np.isfinite(arr)):
        raise SumcircuitError(
            f"{name} contains NaN or inf; drop documents whose region is empty before "
            "bootstrapping."
        )
    return arr


def _check_boot(n_boot: int, confidence: float) -> None:
    if n_boot < 1:
        raise SumcircuitError(f"n_boot must be at least 1; got {n_boot}.")
    if not 0.0 < confidence < 1.0:
        raise SumcircuitError(f"confidence must lie strictly between 0 and 1; got {confidence}.")


def _resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Document indices of each resample, shape (n_boot, n)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Multiplicity of each document in each resample: (n_boot, n) float64, rows sum to n."""
    n_boot = idx.shape[0]
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each of ``n`` documents is drawn in each of ``n_boot`` seeded resamples (the
    scheme of every CI here): (n_boot, n) float64, rows sum to n; ``counts @ x / n`` are the
    resampled means of a per-document statistic x."""
    return _counts(_resample_indices(n, n_boot, seed), n)


def _percentile_interval(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return lo, hi


def _scalar_or_array(lo: np.ndarray, hi: np.ndarray, one_d: bool):
    if one_d:
        return float(lo), float(hi)
    return np.asarray(lo), np.asarray(hi)


def bootstrap_ci(
    values: np.ndarray,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    stat: Callable[..., np.ndarray] = np.mean,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of ``stat`` over documents (the first axis).

    values: (n_docs,) → returns (lo, hi) floats; (n_docs, n_items) → returns arrays lo, hi of
    shape (n_items,), every item resampled with the same document indices.
    lo, hi = the (1−c)/2 and (1+c)/2 quantiles (numpy "linear" method) of
    ``stat(values[idx_b], axis=0)`` over b = 1..n_boot, c = ``confidence``.
    ``stat`` must accept an ``axis`` keyword; ``np.mean`` takes a fast matrix-product path.
    """
    arr = _as_samples(values, "values")
    _check_boot(n_boot, confidence)
    n = arr.shape[0]
    idx = _resample_indices(n, n_boot, seed)
    if stat is np.mean:
        boot = _counts(idx, n) @ arr / n  # (n_boot,) or (n_boot, n_items)
    else:
        per_row = max(1, int(np.prod(arr.shape)))
        chunk = max(1, _GATHER_BUDGET // per_row)
        parts = [np.asarray(stat(arr[idx[i : i + chunk]], axis=1)) for i in range(0, n_boot, chunk)]
        boot = np.concatenate(parts, axis=0)
    lo, hi = _percentile_interval(boot, confidence)
    return _scalar_or_array(lo, hi, arr.ndim == 1)


def ratio_bootstrap_ci(
    num: np.ndarray,
    den: np.ndarray,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the ratio of means, mean(num) / mean(den).

    num, den: (n_docs,) or (n_docs, n_items), paired by document: each resample takes the same
    documents for both, and computes Σ_b num / Σ_b den (the 1/n cancels). Used for
    sufficiency = mean(m_patch − m_base) / mean(m_ft − m_base) over documents.
    Resamples whose denominator is 0 give ±inf/NaN; NaN resamples are dropped from the
    quantiles, and if all are NaN the interval is (NaN, NaN).
    """
    a = _as_samples(num, "num")
    b = _as_samples(den, "den")
    if a.shape != b.shape:
        raise SumcircuitError(
            f"num and den must be paired by document with the same shape; got {a.shape} "
            f"and {b.shape}."
        )
    _check_boot(n_boot, confidence)
    n = a.shape[0]
    counts = resample_counts(n, n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = (counts @ a) / (counts @ b)
    alpha = 1.0 - confidence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return _scalar_or_array(lo, hi, a.ndim == 1)


def paired_bootstrap_diff(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> PairedDiff:
    """Paired bootstrap of the mean difference d = a − b over the same examples (1-D).

    mean_diff = mean(a − b); ci95 = 2.5% and 97.5% percentiles of the resampled mean
    differences; p_value = min(1, 2·min(P*(d̄ ≤ 0), P*(d̄ ≥ 0))), the two-sided bootstrap
    p-value from the fraction of resamples on each side of 0 (its resolution is 1/n_boot; two
    identical arms give 1.0); n = number of examples.
    """
    x = _as_samples(a, "a", ndim=(1,))
    y = _as_samples(b, "b", ndim=(1,))
    if x.shape != y.shape:
        raise SumcircuitError(
            f"a and b must score the same examples; got {x.shape[0]} and {y.shape[0]} scores."
        )
    _check_boot(n_boot, 0.95)
    d = x - y
    n = d.shape[0]
    boot = resample_counts(n, n_boot, seed) @ d / n  # (n_boot,)
    lo, hi = _percentile_interval(boot, 0.95)
    p = min(1.0, 2.0 * min(float(np.mean(boot <= 0.0)), float(np.mean(boot >= 0.0))))
    return PairedDiff(float(d.mean()), (float(lo), float(hi)), p, n)


def fraction_negative_ci(
    deltas: np.ndarray,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """Fraction of items (heads) whose mean over documents is < 0, with a bootstrap CI.

    deltas: (n_docs, n_heads), e.g. ΔH = H_ft − H_base per document and head.
    fraction = mean_h[ mean_d deltas[d, h] < 0 ]. Each resample draws documents with
    replacement, recomputes every head's mean over them and the fraction < 0; the CI is the
    percentile interval of those fractions. Returns (fraction, (lo, hi)).
    """
    arr = _as_samples(deltas, "deltas", ndim=(2,))
    _check_boot(n_boot, confidence)
    n = arr.shape[0]
    fraction = float(np.mean(arr.mean(axis=0) < 0.0))
    counts = resample_counts(n, n_boot, seed)
    boot = np.mean((counts @ arr) < 0.0, axis=1)  # (n_boot,); sign of the sum = sign of mean
    lo, hi = _percentile_interval(boot, confidence)
    return fraction, (float(lo), float(hi))


def gain_check(den: np.ndarray, *, n_boot: int, seed: int, warn: bool = True) -> dict[str, Any]:
    """The denominator of every recovered fraction, m_ft − m_base per document (n_docs,): its
    mean with a bootstrap CI and two flags — ``negative`` (the fine-tune *lowered* the
    log-likelihood: a "recovered" fraction then measures how much of a loss is reproduced) and
    ``ci_spans_zero`` (the gain itself is not established, so every fraction of it is noise
    over noise). With ``warn``, either flag is logged as a warning."""
    arr = _as_samples(den, "m_ft − m_base", ndim=(1,))
    lo, hi = bootstrap_ci(arr, n_boot=n_boot, seed=seed)
    value = float(arr.mean())
    check = {
        "value": value,
        "ci95": [float(lo), float(hi)],
        "negative": value < 0.0,
        "ci_spans_zero": bool(lo <= 0.0 <= hi),
    }
    if warn and check["negative"]:
        log.warning(
            "m_ft − m_base = %.3g nats/token is negative: the fine-tune lowers the summary "
            "log-likelihood, so sufficiency and necessity are fractions of a loss",
            value,
        )
    elif warn and check["ci_spans_zero"]:
        log.warning(
            "the 95%% CI of m_ft − m_base [%.3g, %.3g] spans 0: the gain is not established on "
            "these documents, so fractions of it are unreliable; score on more documents",
            lo,
            hi,
        )
    return check


def recovered(
    num: np.ndarray,
    den: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    min_delta: float,
    warn: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratio of means Σ num / Σ den per column with bootstrap CIs.

    num: (n_docs, n_sets), den: (n_docs,) → (value, lo, hi), each (n_sets,). Raises when
    |mean(den)| ≤ min_delta: the fine-tune changed nothing the metric can see; warns (see
    :func:`gain_check`) when the mean is negative or its CI spans 0 (``warn=False``: a
    caller's further fractions of the same denominator, already warned about).
    """
    delta = float(np.mean(den))
    if abs(delta) <= min_delta:
        raise SumcircuitError(
            f"the fine-tuned and base models give the same summary log-likelihood "
            f"(m_ft − m_base = {delta:.3g} nats/token): there is nothing to explain; "
            "check that --finetuned is the fine-tuned model"
        )
    if warn:
        gain_check(den, n_boot=n_boot, seed=seed)
    value = num.sum(0) / den.sum()
    lo, hi = ratio_bootstrap_ci(
        num, np.repeat(den[:, None], num.shape[1], axis=1), n_boot=n_boot, seed=seed
    )
    return value, np.asarray(lo), np.asarray(hi)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores along the last axis, ties to the lower index."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def topk_bootstrap(
    per_doc_scores: np.ndarray,
    in_band: np.ndarray,
    *,
    k: int = 3,
    min_in_band: int = 2,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Bootstrap over documents of the top-``k`` layers and of "≥ min_in_band of them in band".

    per_doc_scores: (n_docs, L), e.g. each document's KL averaged over a layer's heads;
    in_band: (L,) bool. In each resample (:func:`resample_counts`) every layer's score is the
    mean over the drawn documents of its per-document score, layers are ranked highest first
    (ties: lower layer first) and the top ``k`` taken. ``top_k_frequency[l]`` is the fraction of
    resamples in which layer ``l`` is among them; ``support`` the fraction in which at least
    ``min_in_band`` of them lie in the band: the bootstrap probability that this holds for a fresh
    sample of documents. ``support_ci95`` is the Wilson interval of that proportion over the
    ``n_boot`` resamples, i.e. Monte Carlo error only, not a second layer of sampling error.
    """
    scores = np.asarray(per_doc_scores, dtype=np.float64)
    band = np.asarray(in_band, dtype=bool).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] != band.size:
        raise SumcircuitError(
            f"per-document layer scores must be (n_docs >= 1, {band.size} layers); "
            f"got shape {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise SumcircuitError("per-document layer scores contain NaN or inf")
    if n_boot < 1 or not 1 <= k <= band.size:
        raise SumcircuitError(f"need n_boot >= 1 and 1 <= k <= {band.size}; got {n_boot}, {k}")
    n, n_layers = scores.shape
    top = _top_k(resample_counts(n, n_boot, seed) @ scores / n, k)  # (n_boot, k)
    frequency = np.bincount(top.ravel(), minlength=n_layers) / n_boot  # (L,)
    hits = int((band[top].sum(axis=1) >= min_in_band).sum())
    observed = _top_k(scores.mean(axis=0), k)
    return {
        "n_docs": int(n),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "k": int(k),
        "min_in_band": int(min_in_band),
        "band_layers": [int(x) for x in np.flatnonzero(band)],
        "top_k": [int(x) for x in observed],
        "top_k_in_band": int(band[observed].sum()),
        "top_k_frequency": [float(x) for x in frequency],
        "support": hits / n_boot,
        "support_ci95": list(wilson_interval(hits, n_boot)),
    }
