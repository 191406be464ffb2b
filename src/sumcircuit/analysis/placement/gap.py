"""The placement curve's statistics, on a matrix of per-document log-likelihoods.

``per_doc`` is (n_docs, n_runs): the held-out log-likelihood per reference token of every
document under every run. One set of bootstrap resamples of the documents
(:func:`~sumcircuit.stats.resample_counts`) serves every run and statistic, so the documents are
resampled jointly: a resample's gap closed compares the runs on the same documents.

- LL of run j: its mean over documents, with the percentile CI of the resampled means;
- percentile of run j among random runs R: 100 · (#R below + ½ #R equal) / |R|
  (:func:`~sumcircuit.stats.percentile_among`), on the full-sample means;
- gap closed by run j: (LL_j − mean_R LL_r) / (LL_all − mean_R LL_r), with the same ratio on
  every resample for its CI (resamples whose denominator is 0 are dropped).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from sumcircuit.errors import SumcircuitError
from sumcircuit.stats import percentile_among, resample_counts

__all__ = ["CurveStats", "spearman"]

_TAILS = (0.025, 0.975)


class CurveStats:
    """Means, CIs, percentiles and gaps closed of the runs (columns) of ``per_doc``."""

    def __init__(self, per_doc: np.ndarray, *, n_boot: int, seed: int) -> None:
        values = np.asarray(per_doc, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] == 0:
            raise SumcircuitError(
                f"the placement curve needs (documents, runs) log-likelihoods, got {values.shape}"
            )
        if not np.all(np.isfinite(values)):
            raise SumcircuitError("some held-out log-likelihoods are NaN or infinite")
        n = values.shape[0]
        self.mean = values.mean(axis=0)  # (n_runs,)
        self.boot = resample_counts(n, n_boot, seed) @ values / n  # (n_boot, n_runs)

    def loglik(self, j: int) -> tuple[float, list[float]]:
        """Run ``j``'s mean log-likelihood and its 95% CI."""
        lo, hi = np.quantile(self.boot[:, j], _TAILS)
        return float(self.mean[j]), [float(lo), float(hi)]

    def percentile(self, j: int, randoms: list[int]) -> float:
        """Run ``j``'s percentile among the random runs."""
        return percentile_among(float(self.mean[j]), self.mean[randoms])

    def gap_closed(self, j: int, randoms: list[int], full: int) -> tuple[float, list[float]]:
        """(LL_j − mean LL_random) / (LL_all − mean LL_random) and its 95% CI."""
        if not randoms:
            raise SumcircuitError("the gap closed needs at least one random run")

        def ratio(means: np.ndarray) -> np.ndarray:
            band = means[..., randoms].mean(axis=-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                return (means[..., j] - band) / (means[..., full] - band)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: the CI is NaN
            boot = ratio(self.boot)
            boot = boot[np.isfinite(boot)]
            lo, hi = np.quantile(boot, _TAILS) if boot.size else (np.nan, np.nan)
        return float(ratio(self.mean)), [float(lo), float(hi)]


def spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman rank correlation of two series over their shared index (NaN if either is
    constant)."""
    a, b = a.align(b, join="inner")
    if len(a) < 2 or a.nunique() < 2 or b.nunique() < 2:
        return float("nan")
    return float(a.rank().corr(b.rank()))
