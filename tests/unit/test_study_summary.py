"""The LoRA part of summary.json: per-model rows with ROUGE and loglik, paired differences of
both outcomes against the standard arm and the base model, and the claim's per-metric
verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sumcircuit.evaluation.rouge import METRICS
from sumcircuit.stats import bootstrap_ci, paired_bootstrap_diff
from sumcircuit.study.claims import lora_claim
from sumcircuit.study.summary import comparisons, paired_differences, score_row

N = 40


def _frame(rouge: float | None, loglik: float | None, seed: int) -> pd.DataFrame:
    """Per-example scores as the summary reads them; ``rouge`` None: evaluated with
    ``--no-generate`` (no ROUGE, no loop flags)."""
    rng = np.random.default_rng(seed)
    data = {m: np.clip((rouge or 0) + 0.05 * rng.standard_normal(N), 0, 1) for m in METRICS}
    data["loglik"] = np.full(N, np.nan) if loglik is None else loglik + 0.1 * rng.standard_normal(N)
    data["loops"] = (rng.random(N) < 0.2).astype(float)
    if rouge is None:
        data |= {m: np.full(N, np.nan) for m in (*METRICS, "loops")}
    return pd.DataFrame(data, index=pd.Index([f"d{i}" for i in range(N)], name="id"))


@pytest.fixture
def frames() -> dict[str, pd.DataFrame]:
    return {
        "base": _frame(0.10, -3.0, 0),
        "full": _frame(0.30, -2.0, 1),
        "standard": _frame(0.25, -2.2, 2),
        "targeted": _frame(0.26, -2.1, 3),
    }


def test_score_row_has_rouge_and_loglik_with_cis(frames) -> None:
    frame = frames["targeted"]
    row = score_row(frame, seed=0)
    assert row["rougeL"] == pytest.approx(frame["rougeL"].mean())
    assert row["loglik"] == pytest.approx(frame["loglik"].mean())
    assert row["loglik_ci95"] == list(bootstrap_ci(frame["loglik"].to_numpy(), seed=0))
    lo, hi = row["loglik_ci95"]
    assert lo < row["loglik"] < hi
    assert row["loop_rate"] == pytest.approx(frame["loops"].mean()) and 0 < row["loop_rate"] < 1
    assert row["loop_rate_ci95"] == list(bootstrap_ci(frame["loops"].to_numpy(), seed=0))


def test_score_row_of_a_model_evaluated_without_generation() -> None:
    row = score_row(_frame(None, -2.0, 6), seed=0)
    assert all(row[m] is None for m in (*METRICS, "rougeL_ci95", "loop_rate", "loop_rate_ci95"))
    assert row["loglik"] == pytest.approx(_frame(None, -2.0, 6)["loglik"].mean())


def test_score_row_of_a_model_without_loglik(frames) -> None:
    row = score_row(_frame(0.2, None, 5), seed=0)
    assert row["loglik"] is None and row["loglik_ci95"] is None
    assert row["rougeL_ci95"][0] <= row["rougeL"] <= row["rougeL_ci95"][1]


def test_comparisons_against_standard_and_base(frames) -> None:
    comps = comparisons(frames, seed=0)
    assert set(comps) == {"vs_standard", "vs_base"}
    assert set(comps["vs_standard"]) == {"base", "full", "targeted"}
    assert set(comps["vs_base"]) == {"full", "standard", "targeted"}
    for key, ref in (("vs_standard", "standard"), ("vs_base", "base")):
        for arm, diffs in comps[key].items():
            assert set(diffs) == {"rougeL", "loglik"}
            for metric in ("rougeL", "loglik"):
                want = paired_bootstrap_diff(frames[arm][metric], frames[ref][metric], seed=0)
                assert diffs[metric]["mean_diff"] == pytest.approx(want.mean_diff)
                assert diffs[metric]["ci95"] == list(want.ci95)
                assert diffs[metric]["p_value"] == want.p_value and diffs[metric]["n"] == N
    # base's log-likelihood is far below the full fine-tune's: decided in both directions
    assert comps["vs_base"]["full"]["loglik"]["ci95"][0] > 0
    assert comps["vs_standard"]["base"]["loglik"]["ci95"][1] < 0


def test_pairs_by_id_and_skips_an_outcome_one_side_lacks(frames) -> None:
    shuffled = frames["targeted"].sample(frac=1.0, random_state=0)
    same = paired_differences(shuffled, frames["standard"], seed=0)
    assert same == paired_differences(frames["targeted"], frames["standard"], seed=0)
    old = paired_differences(_frame(0.2, None, 5), frames["standard"], seed=0)
    assert old["loglik"] is None and old["rougeL"]["n"] == N


LORA = {
    "standard": {"rougeL": 0.2, "loglik": -2.2, "trainable_params": 100},
    "targeted": {"rougeL": 0.25, "loglik": -2.1, "trainable_params": 10},
}


def _diff(lo: float, hi: float) -> dict:
    return {"mean_diff": (lo + hi) / 2, "ci95": [lo, hi], "p_value": 0.5, "n": N}


@pytest.mark.parametrize(
    ("rouge", "loglik", "verdicts", "holds"),
    [
        ((0.01, 0.09), (0.02, 0.2), {"rougeL": True, "loglik": True}, True),
        ((0.01, 0.09), (-0.1, 0.2), {"rougeL": True, "loglik": None}, None),
        ((0.01, 0.09), (-0.3, -0.1), {"rougeL": True, "loglik": False}, False),
        ((-0.02, 0.03), (-0.1, 0.2), {"rougeL": None, "loglik": None}, None),
        ((-0.09, -0.01), (0.02, 0.2), {"rougeL": False, "loglik": True}, False),
    ],
)
def test_lora_claim_decides_each_metric(rouge, loglik, verdicts, holds) -> None:
    row = lora_claim(LORA, {"rougeL": _diff(*rouge), "loglik": _diff(*loglik)})
    assert row["verdicts"] == verdicts and row["holds"] is holds
    assert "ROUGE-L 0.250 vs 0.200" in row["ours"]
    assert "log-likelihood per reference token -2.100 vs -2.200" in row["ours"]
    assert "90% fewer" in row["ours"]


def test_lora_claim_without_loglik_is_decided_on_rouge_alone() -> None:
    row = lora_claim(LORA, {"rougeL": _diff(0.01, 0.09), "loglik": None})
    assert row["verdicts"] == {"rougeL": True} and row["holds"] is True
    assert "log-likelihood per reference token not measured" in row["ours"]
    assert lora_claim({}, None) | {"claim": ""} == {
        "claim": "",
        "paper": row["paper"],
        "ours": "not run",
        "holds": None,
        "verdicts": {},
    }


def test_metric_bars_draws_each_score_and_skips_a_missing_one(frames, tmp_path) -> None:
    from sumcircuit.report.lora_plots import metric_bars

    rows = {name: score_row(frame, seed=0) for name, frame in frames.items()}
    rows["old"] = score_row(_frame(0.2, None, 5), seed=0)
    rouge = metric_bars(rows, tmp_path / "rouge")
    loglik = metric_bars(rows, tmp_path / "loglik", key="loglik", label="ll", from_zero=False)
    assert rouge.name == "rouge.png" and loglik.name == "loglik.png"
    assert rouge.stat().st_size > 0 and loglik.stat().st_size > 0
    assert metric_bars({"old": rows["old"]}, tmp_path / "none", key="loglik") is None
    assert not (tmp_path / "none.png").exists()
