"""A component set against random sets of the same size: drawing the random sets, the set's
percentile rank among them, and a bootstrap CI of that rank over documents.

The percentile of a value among K draws is 100 · (#draws < value + ½ #draws == value) / K.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from sumcircuit.errors import SumcircuitError
from sumcircuit.stats.bootstrap import bootstrap_ci

__all__ = ["percentile_among", "percentile_ci", "percentile_rank", "random_sets"]


def percentile_rank(value: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """100 · (#controls < value + ½ #controls == value) / K along the last axis of ``controls``.

    value: (...,), controls: (..., K) → (...,).
    """
    value = np.asarray(value, dtype=np.float64)[..., None]
    below = (controls < value).sum(-1)
    ties = (controls == value).sum(-1)
    return 100.0 * (below + 0.5 * ties) / controls.shape[-1]


def percentile_among(value: float, draws: list[float] | np.ndarray) -> float:
    """100 · (#draws < value + ½ #draws == value) / #draws."""
    arr = np.asarray(draws, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise SumcircuitError("a percentile among draws needs at least one draw")
    return float(percentile_rank(np.float64(value), arr))


def percentile_ci(
    num: np.ndarray, den: np.ndarray, *, n_boot: int, seed: int
) -> tuple[float, float]:
    """Bootstrap CI over documents of the circuit's percentile among controls.

    num: (n_docs, 1 + K), column 0 the circuit; den: (n_docs,).
    """
    values = np.column_stack([num, den])  # (n, K + 2)

    def stat(x: np.ndarray, axis: int) -> np.ndarray:
        sums = x.sum(axis=axis)  # (chunk, K + 2)
        ratios = sums[:, :-1] / sums[:, -1:]
        return percentile_rank(ratios[:, 0], ratios[:, 1:])

    lo, hi = bootstrap_ci(values, stat=stat, n_boot=n_boot, seed=seed)
    return float(lo), float(hi)


def random_sets(
    pool: list[Any], size: int, count: int, exclude: tuple[Any, ...], *, seed: int
) -> list[tuple[Any, ...]]:
    """``count`` distinct sorted ``size``-subsets of ``pool``, none equal to ``exclude`` (seeded)."""
    total = math.comb(len(pool), size)
    available = total - (1 if len(exclude) == size and set(exclude) <= set(pool) else 0)
    if count > available:
        raise SumcircuitError(
            f"--controls {count} asks for more random sets than exist: only {available} distinct "
            f"sets of {size} out of {len(pool)} components differ from the circuit; lower "
            f"--controls to at most {available}"
        )
    rng = np.random.default_rng(seed)
    exclude = tuple(sorted(exclude))
    if total <= 20 * count + 1000:  # small: enumerate and draw without replacement
        every = [c for c in itertools.combinations(sorted(pool), size) if c != exclude]
        return [every[i] for i in sorted(rng.choice(len(every), count, replace=False))]
    chosen: list[tuple[Any, ...]] = []
    seen = {exclude}
    while len(chosen) < count:
        pick = tuple(sorted(pool[i] for i in rng.choice(len(pool), size, replace=False)))
        if pick not in seen:
            seen.add(pick)
            chosen.append(pick)
    return chosen
