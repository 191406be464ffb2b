"""Position baselines: the first k, the last k, and k evenly spaced components.

They read no document and cost nothing, so every informed locator must beat them on the
faithfulness curve (and, for adaptation, on the placement curve). Components are ordered as the
ranking index is: layers, or heads layer by layer.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sumcircuit.analysis.locate.registry import Shape, plain_key, register_locator

_BASELINE = dict(source="none", cost="none", candidate=False, rules=("topk",))


def _positions(shape: Shape, level: str) -> pd.Series:
    """0, 1, 2, ... over the components of ``level``."""
    index = shape.index(level)
    return pd.Series(range(len(index)), index=index, dtype=float)


@register_locator("first-k", help="the lowest k components", **_BASELINE)
def first_k(result: None, level: str, shape: Shape, name: str) -> pd.Series:
    return -_positions(shape, level)


@register_locator("last-k", help="the highest k components", **_BASELINE)
def last_k(result: None, level: str, shape: Shape, name: str) -> pd.Series:
    return _positions(shape, level)


def evenly_spaced(n: int, level: str, shape: Shape) -> list[Any]:
    """``n`` components spread over the model: the middle of each of ``n`` equal parts
    (30 layers: n=1 → 15; n=3 → 5, 15, 25)."""
    index = shape.index(level)
    picks = [int((i + 0.5) * len(index) / n) for i in range(n)]
    return [plain_key(index[p]) for p in picks]


def _spread_order(total: int) -> list[int]:
    """Positions in the order a bisection visits them (0.5, 0.25, 0.75, ... of the range):
    each prefix is roughly evenly spaced. Only the scores' display order; the top-n sets come
    from :func:`evenly_spaced`."""
    order: list[int] = []
    j = 1
    while len(order) < total:
        x, f, k = 0.0, 0.5, j
        while k:  # van der Corput radical inverse of j in base 2
            x += f * (k & 1)
            k, f = k >> 1, f / 2
        p = int(x * total)
        if p not in order:
            order.append(p)
        j += 1
    return order


@register_locator(
    "evenly-spaced",
    help="k components spread evenly over the model",
    top_rule=evenly_spaced,
    **_BASELINE,
)
def spread(result: None, level: str, shape: Shape, name: str) -> pd.Series:
    index = shape.index(level)
    rank = {p: r for r, p in enumerate(_spread_order(len(index)))}
    return pd.Series([-float(rank[p]) for p in range(len(index))], index=index)
