"""The evidence behind each verdict of the paper-claims table: the verdict rule and the LoRA
arms' comparison with the random-layer draws (the study's summary calls them;
:mod:`sumcircuit.study.claims` words the result). The statistics they rest on — top-k bootstrap
support, percentile among draws, minimum detectable effects — live in :mod:`sumcircuit.stats`.

- **Verdict** (:func:`support_verdict`) of a bootstrap support
  (:func:`sumcircuit.stats.topk_bootstrap`): True when support >= 0.95, False when <= 0.05, None
  (undecided) in between.
- **Targeted vs random** (:func:`targeted_vs_random`): the targeted arm's percentile among the
  random-layer arms (:func:`sumcircuit.stats.percentile_among`, as the causal validation's
  ``random_percentile``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from sumcircuit.stats import percentile_among

__all__ = ["DECIDE", "random_draw_arms", "support_verdict", "targeted_vs_random"]

DECIDE = 0.95  # bootstrap support needed for a verdict (1 − DECIDE for its negation)
_RANDOM_ARM = re.compile(r"random\d*")


def support_verdict(support: float, decide: float = DECIDE) -> bool | None:
    """True when support >= decide, False when <= 1 − decide, None in between."""
    return True if support >= decide else False if support <= 1 - decide else None


def random_draw_arms(arms: list[str]) -> list[str]:
    """The random-layer arms among LoRA arm names: ``random`` or ``random1`` ... ``randomN``."""
    return [a for a in arms if _RANDOM_ARM.fullmatch(a)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def targeted_vs_random(
    lora: dict[str, dict[str, Any]],
    metrics: tuple[str, ...] = ("rougeL", "loglik"),
    arm: str = "targeted",
) -> dict[str, Any] | None:
    """Per metric, the ``arm``'s score (under ``targeted``), the random draws' scores and its
    percentile among them; a metric missing from the arm or every draw is left out. None
    without that arm or any random draw."""
    draws = random_draw_arms(list(lora))
    if arm not in lora or not draws:
        return None
    out: dict[str, Any] = {}
    for metric in metrics:
        value = _number(lora[arm].get(metric))
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
