"""The evidence behind each verdict of the paper-claims table: pure functions, arrays in, numbers
out (the study's summary calls them; :mod:`sumcircuit.study.claims` words the result).

Definitions (tests pin them on hand-computed cases):

- **Top-k bootstrap support** (:func:`topk_bootstrap`). Documents are resampled with replacement
  (:func:`sumcircuit.stats.resample_counts`, the scheme of every CI); in each resample every
  layer's score is the mean over the drawn documents of its per-document score, layers are ranked highest first (ties: lower layer
  first) and the top ``k`` taken. ``top_k_frequency[l]`` is the fraction of resamples in which
  layer ``l`` is among them; ``support`` the fraction in which at least ``min_in_band`` of them
  lie in the band. ``support`` is the estimate (the bootstrap probability that the claim holds
  for a fresh sample of documents); ``support_ci95`` is the Wilson interval of that proportion
  over the ``n_boot`` resamples, i.e. Monte Carlo error only, not a second layer of sampling
  error. Verdict (:func:`support_verdict`): True when support >= 0.95, False when <= 0.05,
  None (undecided) in between.
- **Percentile among draws** (:func:`percentile_among`): 100 · (#draws < value + ½ #draws ==
  value) / #draws, as the causal validation's ``random_percentile``.
- **Minimum detectable effect** of a two-sided z-test at level α with power 1−β:
  MDE = (z_{1−α/2} + z_{1−β}) · sd / √n, ``sd`` the sample standard deviation (ddof=1) of the
  paired per-document differences; the n at which an observed difference d would be detectable
  is ⌈((z_{1−α/2} + z_{1−β}) · sd / |d|)²⌉ (None when d = 0: never).
- **Binomial MDE** for a fraction of n items against p0 (the entropy claim: heads that lose
  entropy, against 0.5): MDE = (z_{1−α/2} + z_{1−β}) · √(p0(1−p0)/n), the smallest departure
  |p − p0| a model with n heads can show even with unlimited documents.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import scipy.stats

from sumcircuit.analysis.validate import percentile_rank
from sumcircuit.errors import SumcircuitError
from sumcircuit.stats import resample_counts

__all__ = [
    "DECIDE",
    "binomial_power",
    "min_detectable_effect",
    "n_to_detect",
    "paired_power",
    "percentile_among",
    "random_draw_arms",
    "support_verdict",
    "targeted_vs_random",
    "topk_bootstrap",
    "wilson_interval",
]

DECIDE = 0.95  # bootstrap support needed for a verdict (1 − DECIDE for its negation)
_RANDOM_ARM = re.compile(r"random\d*")


def _z_sum(alpha: float, power: float) -> float:
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise SumcircuitError(
            f"alpha and power must lie strictly between 0 and 1; got {alpha} and {power}"
        )
    return float(scipy.stats.norm.ppf(1 - alpha / 2) + scipy.stats.norm.ppf(power))


def min_detectable_effect(
    per_doc_diffs: np.ndarray, alpha: float = 0.05, power: float = 0.8
) -> float:
    """(z_{1−α/2} + z_power) · sd / √n of paired per-document differences (n,)."""
    d = np.asarray(per_doc_diffs, dtype=np.float64).reshape(-1)
    if d.size < 2 or not np.all(np.isfinite(d)):
        raise SumcircuitError(
            f"the minimum detectable effect needs at least 2 finite paired differences; got "
            f"{d.size} values{'' if np.all(np.isfinite(d)) else ' with NaN or inf'}"
        )
    return _z_sum(alpha, power) * float(d.std(ddof=1)) / math.sqrt(d.size)


def n_to_detect(
    observed_diff: float, sd: float, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """⌈((z_{1−α/2} + z_power) · sd / |diff|)²⌉, at least 1; None when the difference is 0."""
    if observed_diff == 0 or not math.isfinite(observed_diff):
        return None
    return max(1, math.ceil((_z_sum(alpha, power) * sd / abs(observed_diff)) ** 2))


def paired_power(
    per_doc_diffs: np.ndarray, alpha: float = 0.05, power: float = 0.8
) -> dict[str, Any]:
    """n, mean and sd (ddof=1) of paired differences (n,), their MDE and the n that would detect
    the observed mean (``n_needed``, None when it is 0)."""
    d = np.asarray(per_doc_diffs, dtype=np.float64).reshape(-1)
    mde = min_detectable_effect(d, alpha, power)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    return {
        "n": int(d.size),
        "mean_diff": mean,
        "sd": sd,
        "mde": mde,
        "n_needed": n_to_detect(mean, sd, alpha, power),
        "alpha": alpha,
        "power": power,
    }


def binomial_power(
    fraction: float, n: int, p0: float = 0.5, alpha: float = 0.05, power: float = 0.8
) -> dict[str, Any]:
    """Smallest departure from ``p0`` detectable for a fraction of ``n`` items, and the number of
    items at which the observed departure would be."""
    if n < 1:
        raise SumcircuitError(f"the binomial minimum detectable effect needs n >= 1; got {n}")
    sd = math.sqrt(p0 * (1 - p0))
    return {
        "n": int(n),
        "observed": float(fraction),
        "p0": p0,
        "departure": float(fraction) - p0,
        "mde": _z_sum(alpha, power) * sd / math.sqrt(n),
        "n_needed": n_to_detect(float(fraction) - p0, sd, alpha, power),
        "alpha": alpha,
        "power": power,
    }


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion successes / n."""
    if n < 1 or not 0 <= successes <= n:
        raise SumcircuitError(
            f"a proportion needs 0 <= successes <= n and n >= 1; got {successes}/{n}"
        )
    z = float(scipy.stats.norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile_among(value: float, draws: list[float] | np.ndarray) -> float:
    """100 · (#draws < value + ½ #draws == value) / #draws."""
    arr = np.asarray(draws, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise SumcircuitError("a percentile among draws needs at least one draw")
    return float(percentile_rank(np.float64(value), arr))


def support_verdict(support: float, decide: float = DECIDE) -> bool | None:
    """True when support >= decide, False when <= 1 − decide, None in between."""
    return True if support >= decide else False if support <= 1 - decide else None


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
    in_band: (L,) bool. See the module docstring for the definitions.
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


def random_draw_arms(arms: list[str]) -> list[str]:
    """The random-layer arms among LoRA arm names: ``random`` or ``random1`` ... ``randomN``."""
    return [a for a in arms if _RANDOM_ARM.fullmatch(a)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def targeted_vs_random(
    lora: dict[str, dict[str, Any]], metrics: tuple[str, ...] = ("rougeL", "loglik")
) -> dict[str, Any] | None:
    """Per metric, the targeted arm's score, the random draws' scores and its percentile among
    them; a metric missing from targeted or every draw is left out. None without a targeted arm
    or any random draw."""
    draws = random_draw_arms(list(lora))
    if "targeted" not in lora or not draws:
        return None
    out: dict[str, Any] = {}
    for metric in metrics:
        value = _number(lora["targeted"].get(metric))
        scores = {a: _number(lora[a].get(metric)) for a in draws}
        scores = {a: s for a, s in scores.items() if s is not None}
        if value is None or not scores:
            continue
        out[metric] = {
            "targeted": value,
            "draws": list(scores.values()),
            "arms": list(scores),
            "percentile": percentile_among(value, list(scores.values())),
        }
    return out
