"""Areas under faithfulness curves with bootstrap CIs over documents, and the choice of the
most faithful locator with its uncertainty. Pure numpy: no models, no files.

A curve is a locator's f(n) at sizes n with x = n / N; f(0) = 0 (the empty set recovers
nothing). CPR = ∫ f dx (higher is better), CMD = ∫ |1 − f| dx with |1 − f(0)| = 1 (lower is
better), trapezoid rule over [0, the largest fraction] (MIB's areas).

Uncertainty: each bootstrap resample draws scoring documents with replacement
(:func:`sumcircuit.stats.resample_counts`, the scheme of every CI here), recomputes every set's
f = Σ_d num / Σ_d (m_ft − m_base) over the drawn documents, and from them every locator's areas.
The paired difference of two locators' CPR is taken resample by resample (the same documents),
so what both curves share cancels.

The choice (:func:`choose`): the candidate with the highest CPR is best; it is *significantly*
better than the runner-up when the 95% CI of their paired CPR difference excludes 0. Tie rule:
among the candidates whose CPR difference from the best has a CI including 0 (tied with it),
the cheapest wins by the registry's declared cost order (``Locator.cost_rank``: free diff
measures, then one gradient pass, then K passes, then the exact scan), then the higher CPR —
with no evidence that a dearer locator is more faithful, the cheaper one is preferred.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sumcircuit.stats import resample_counts

__all__ = [
    "TIE_RULE",
    "area",
    "boot_fractions",
    "choice_sentence",
    "choose",
    "paired_difference",
]

TIE_RULE = (
    "highest CPR; when the paired bootstrap 95% CI of its CPR difference from another "
    "candidate includes 0 the two are tied, and among the tied the cheapest (declared cost "
    "order: diff measures, one gradient pass, K gradient passes, exact scan) wins, then the "
    "higher CPR"
)


def area(fractions: list[float], values: np.ndarray, at_zero: float) -> np.ndarray:
    """Trapezoid area over x in [0, max fraction] of curves starting at ``at_zero``.

    values: (..., n_sizes) → (...,).
    """
    values = np.asarray(values, dtype=np.float64)
    start = np.full((*values.shape[:-1], 1), at_zero)
    return np.trapezoid(np.concatenate([start, values], axis=-1), [0.0, *fractions], axis=-1)


def boot_fractions(num: np.ndarray, den: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """Every set's f = Σ num / Σ den over each resample of documents: num (n_docs, n_sets),
    den (n_docs,) → (n_boot, n_sets); a resample whose Σ den is 0 gives ±inf/NaN."""
    counts = resample_counts(num.shape[0], n_boot, seed)  # (B, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (counts @ num) / (counts @ den)[:, None]


def paired_difference(a: np.ndarray, b: np.ndarray, observed: float) -> dict[str, Any]:
    """The paired difference of two areas from their resampled values a, b (n_boot,):
    ``value`` (``observed``), percentile ``ci95`` and the two-sided bootstrap ``p_value``
    2·min(P*(d ≤ 0), P*(d ≥ 0)) (as :func:`sumcircuit.stats.paired_bootstrap_diff`)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"value": float(observed), "ci95": [float("nan")] * 2, "p_value": float("nan")}
    lo, hi = np.quantile(d, [0.025, 0.975])
    p = min(1.0, 2.0 * min(float(np.mean(d <= 0.0)), float(np.mean(d >= 0.0))))
    return {"value": float(observed), "ci95": [float(lo), float(hi)], "p_value": p}


def choose(
    cpr: dict[str, float],
    cmd: dict[str, float],
    boot_cpr: dict[str, np.ndarray],
    cost_rank: dict[str, int],
) -> dict[str, Any] | None:
    """The most faithful of the candidate locators (the keys of ``cpr``) by the rule of the
    module docstring; None without a candidate. ``boot_cpr``: each candidate's resampled CPR
    (n_boot,), on the same resamples."""
    pool = sorted(cpr, key=lambda k: (-cpr[k], cmd[k], k))
    if not pool:
        return None
    best = pool[0]
    vs_best = {
        name: paired_difference(boot_cpr[best], boot_cpr[name], cpr[best] - cpr[name])
        for name in pool[1:]
    }
    tied = [best] + [k for k in pool[1:] if not vs_best[k]["ci95"][0] > 0.0]
    winner = min(tied, key=lambda k: (cost_rank.get(k, 0), -cpr[k], cmd[k], k))
    runner_up = pool[1] if len(pool) > 1 else None
    difference = vs_best.get(runner_up) if runner_up else None
    return {
        "rule": TIE_RULE,
        "best_cpr": best,
        "runner_up": runner_up,
        "difference": difference,  # CPR(best) − CPR(runner-up), paired over documents
        "significant": None if difference is None else bool(difference["ci95"][0] > 0.0),
        "tied": tied,
        "winner": winner,
        "vs_best": vs_best,
    }


def choice_sentence(choice: dict[str, Any]) -> str:
    """One sentence saying which locator was chosen and how sure that is (for the CLI, the
    circuit's log line and the report)."""
    winner, best = choice["winner"], choice.get("best_cpr", choice["winner"])
    if "difference" not in choice:  # curves written before the choice had CIs
        return f"most faithful: {winner} (highest CPR; the curves record no CIs)"
    difference = choice["difference"]
    if difference is None:
        return f"most faithful: {winner} (the only candidate)"
    lo, hi = difference["ci95"]
    versus = (
        f"CPR {best} − {choice['runner_up']} = {difference['value']:.3f} "
        f"(95% CI {lo:.3f} to {hi:.3f}, paired over scoring documents)"
    )
    if choice["significant"]:
        return f"most faithful: {winner}, significantly above the runner-up: {versus}"
    return (
        f"most faithful: {winner}, not significantly better than the runner-up ({versus}); "
        f"tie rule: the cheapest of {', '.join(choice['tied'])}"
    )
