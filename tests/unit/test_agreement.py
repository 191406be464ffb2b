"""Agreement of attribution with exact patching, on hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sumcircuit.analysis.causal.agreement import agreement, attribution_vs_exact
from sumcircuit.analysis.causal.attribute import AttributionResult
from sumcircuit.analysis.causal.exact import ExactResult


def test_pearson_kendall_and_top_k_by_hand() -> None:
    # dx = (-1, 0, 1), dy = (-1, 1, 0): r = 1 / (√2 √2) = 0.5; pairs 01, 02 concordant, 12
    # discordant: tau = (2 − 1) / 3. Top-1: layer 2 vs layer 1; top-2: {1, 2} both.
    one = agreement(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]), k=1)
    assert one == pytest.approx({"pearson": 0.5, "kendall": 1 / 3, "top1_overlap": 0.0})
    assert agreement(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]), k=2)[
        "top2_overlap"
    ] == pytest.approx(1.0)
    # reversed: r = tau = −1; top-3 {0, 1, 2} vs {3, 2, 1} share 2 of 3
    rev = agreement(np.array([4.0, 3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert rev == pytest.approx({"pearson": -1.0, "kendall": -1.0, "top3_overlap": 2 / 3})
    # a scaled copy agrees perfectly; k beyond n counts over n
    same = agreement(np.array([0.1, -0.2]), np.array([1.0, -2.0]), k=3)
    assert same == pytest.approx({"pearson": 1.0, "kendall": 1.0, "top3_overlap": 1.0})


def test_constant_or_non_finite_values() -> None:
    flat = agreement(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    assert math.isnan(flat["pearson"]) and math.isnan(flat["kendall"])
    # the NaN pair is left out: the rest are (1, 2), (2, 4), (3, 6)
    holed = agreement(np.array([1.0, np.nan, 2.0, 3.0]), np.array([2.0, 5.0, 4.0, 6.0]))
    assert holed["pearson"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one length"):
        agreement(np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0]))


def _rows(values: list[float]) -> list[dict[str, float]]:
    return [
        {"layer": i, "head": -1, "sufficiency": v, "sufficiency_lo": v, "sufficiency_hi": v}
        for i, v in enumerate(values)
    ]


def test_the_estimate_is_taken_on_the_scans_documents() -> None:
    # per-document layer estimates; d2 (not scanned) is far off and must not count
    per_doc = pd.DataFrame(
        {
            "doc": ["d0", "d0", "d1", "d1", "d2", "d2"],
            "component": "layer",
            "layer": [0, 1, 0, 1, 0, 1],
            "head": -1,
            "sufficiency": [0.2, 0.4, 0.3, 0.6, 9.0, -9.0],
            "necessity": np.nan,
            "m_base": [-3.0, -3.0, -2.0, -2.0, -1.0, -1.0],
            "m_ft": [-2.0, -2.0, -1.0, -1.0, 0.0, 0.0],  # gain 1 per document
        }
    )
    attribution = AttributionResult(
        "all", _rows([3.0, -2.0]), -2.0, -1.0, 3, {}, method="ig-weights", per_doc=per_doc
    )
    scan = ExactResult("layer", _rows([0.3, 0.6]), -2.5, -1.5, 2, {}, doc_ids=["d0", "d1"])
    vs = attribution_vs_exact(attribution, scan)
    # (0.2 + 0.3) / 2 and (0.4 + 0.6) / 2
    assert vs["attribution"] == pytest.approx([0.25, 0.5])
    assert vs["exact"] == [0.3, 0.6] and vs["layers"] == [0, 1]
    assert vs["pearson"] == pytest.approx(1.0) and vs["top3_overlap"] == 1.0
    assert {k: vs[k] for k in ("level", "n_docs", "attribution_n_docs", "method", "direction")} == {
        "level": "layer",
        "n_docs": 2,
        "attribution_n_docs": 2,
        "method": "ig-weights",
        "direction": "sufficiency",
    }
    # a scan that did not record its documents: the attribution's own table, on its documents
    older = attribution_vs_exact(attribution, ExactResult("layer", _rows([0.3, 0.6]), 0, 1, 2, {}))
    assert older["attribution"] == [3.0, -2.0] and older["attribution_n_docs"] == 3
    assert older["pearson"] == pytest.approx(-1.0)
    # a ranking that follows exact patching is trusted, one that reverses it is not
    assert vs["trusted"] is True and older["trusted"] is False
