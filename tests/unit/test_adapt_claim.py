"""The "targeted LoRA on the best adaptation locator reaches standard LoRA" claim: a paired CI
that reaches 0 holds (not significantly below standard), one below 0 fails, on each outcome."""

from __future__ import annotations

import pytest

from sumcircuit.study.claims import adapt_claim

CHOSEN = {
    "locator": "grad-energy",
    "k": 3,
    "layers": [0, 3, 12],
    "gap_closed": 0.4,
    "gap_closed_ci95": [0.2, 0.6],
    "percentile": 100.0,
}
LORA = {
    "standard": {"rougeL": 0.30, "loglik": -2.50, "trainable_params": 921_600},
    "targeted-adapt": {"rougeL": 0.29, "loglik": -2.60, "trainable_params": 92_160},
}


def _diff(lo: float, hi: float) -> dict[str, object]:
    return {"mean_diff": (lo + hi) / 2, "ci95": [lo, hi]}


@pytest.mark.parametrize(
    ("rouge", "loglik", "verdicts", "holds"),
    [
        ((-0.02, 0.01), (-0.15, 0.0), {"rougeL": True, "loglik": True}, True),
        ((0.01, 0.03), (-0.05, 0.02), {"rougeL": True, "loglik": True}, True),
        ((-0.02, 0.01), (-0.15, -0.05), {"rougeL": True, "loglik": False}, False),
        ((-0.03, -0.01), (-0.15, -0.05), {"rougeL": False, "loglik": False}, False),
    ],
)
def test_reaches_means_the_ci_is_not_below_zero(rouge, loglik, verdicts, holds):
    comparison = {"rougeL": _diff(*rouge), "loglik": _diff(*loglik)}
    claim = adapt_claim(LORA, comparison, CHOSEN)
    assert claim["verdicts"] == verdicts and claim["holds"] is holds
    assert "grad-energy's top 3 layers [0, 3, 12]" in claim["ours"]
    assert "90% fewer trainable parameters" in claim["ours"]


def test_not_run_without_the_arm_or_the_curve():
    comparison = {"rougeL": _diff(-0.02, 0.01), "loglik": _diff(-0.1, 0.0)}
    assert adapt_claim(LORA, comparison, None)["ours"] == "not run"
    assert adapt_claim({"standard": LORA["standard"]}, comparison, CHOSEN)["holds"] is None
