"""How much data a comparison needs: minimum detectable effects and the Wilson interval of a
proportion.

- **Minimum detectable effect** of a two-sided z-test at level α with power 1−β:
  MDE = (z_{1−α/2} + z_{1−β}) · sd / √n, ``sd`` the sample standard deviation (ddof=1) of the
  paired per-document differences; the n at which an observed difference d would be detectable
  is ⌈((z_{1−α/2} + z_{1−β}) · sd / |d|)²⌉ (None when d = 0: never).
- **Binomial MDE** for a fraction of n items against p0 (e.g. heads that lose entropy, against
  0.5): MDE = (z_{1−α/2} + z_{1−β}) · √(p0(1−p0)/n), the smallest departure |p − p0| that n
  items can show even with unlimited documents.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.stats

from sumcircuit.errors import SumcircuitError

__all__ = [
    "binomial_power",
    "min_detectable_effect",
    "n_to_detect",
    "paired_power",
    "wilson_interval",
]


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
