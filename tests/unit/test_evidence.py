"""Pinned tests for the claims' evidence (sumcircuit.study.evidence and the statistics it rests on
from sumcircuit.stats): hand-computed values and an independent loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from sumcircuit.errors import SumcircuitError
from sumcircuit.stats import (
    binomial_power,
    min_detectable_effect,
    n_to_detect,
    paired_power,
    percentile_among,
    topk_bootstrap,
    wilson_interval,
)
from sumcircuit.study.claims import (
    band_mask,
    entropy_claim,
    lora_claim,
    lora_evidence,
    middle_layers_claim,
)
from sumcircuit.study.evidence import random_draw_arms, support_verdict, targeted_vs_random

Z = 1.959963984540054 + 0.8416212335729143  # z_{0.975} + z_{0.8}


def test_min_detectable_effect_by_hand() -> None:
    # diffs 1, 2, 3, 4: sd (ddof=1) = sqrt(5/3), n = 4 -> Z * sqrt(5/3) / 2
    assert min_detectable_effect(np.array([1.0, 2, 3, 4])) == pytest.approx(
        Z * math.sqrt(5 / 3) / 2
    )
    assert min_detectable_effect([1.0, 2, 3, 4]) == pytest.approx(1.8084154821)
    # alpha 0.1, power 0.9: z_{0.95} + z_{0.9} = 1.6449 + 1.2816
    assert min_detectable_effect([0.0, 2.0], alpha=0.1, power=0.9) == pytest.approx(
        (1.6448536269514722 + 1.2815515655446004) * math.sqrt(2) / math.sqrt(2)
    )
    with pytest.raises(SumcircuitError, match="at least 2"):
        min_detectable_effect([1.0])
    with pytest.raises(SumcircuitError, match="NaN"):
        min_detectable_effect([1.0, np.nan, 2.0])


def test_n_to_detect_by_hand() -> None:
    # (Z * 1.0 / 0.5)^2 = 31.3955 -> 32
    assert n_to_detect(0.5, 1.0) == 32 == n_to_detect(-0.5, 1.0)
    assert n_to_detect(0.0, 1.0) is None
    assert n_to_detect(1.0, 0.0) == 1  # no spread: one document decides
    # at the n it returns, the observed difference is at least the MDE
    n = n_to_detect(0.03, 0.2)
    assert Z * 0.2 / math.sqrt(n) <= 0.03 < Z * 0.2 / math.sqrt(n - 1)


def test_paired_power_combines_the_two() -> None:
    p = paired_power(np.array([1.0, 2, 3, 4]))
    assert p["n"] == 4 and p["mean_diff"] == 2.5 and p["sd"] == pytest.approx(math.sqrt(5 / 3))
    assert p["mde"] == pytest.approx(1.8084154821)
    assert p["n_needed"] == math.ceil((Z * math.sqrt(5 / 3) / 2.5) ** 2) == 3
    assert paired_power(np.array([-1.0, 1.0]))["n_needed"] is None


def test_binomial_power_by_hand() -> None:
    b = binomial_power(0.6, 100)
    assert b["mde"] == pytest.approx(Z * 0.5 / 10)  # 0.1401
    assert b["departure"] == pytest.approx(0.1)
    assert b["n_needed"] == 197  # (Z * 0.5 / 0.1)^2 = 196.22
    assert binomial_power(0.5, 100)["n_needed"] is None


def test_wilson_interval_matches_scipy() -> None:
    for x, n in [(0, 10), (7, 10), (1000, 1000), (950, 1000)]:
        ref = scipy.stats.binomtest(x, n).proportion_ci(method="wilson")
        assert wilson_interval(x, n) == pytest.approx((ref.low, ref.high))
    assert wilson_interval(0, 10)[1] == pytest.approx(0.27753279986)


def test_percentile_counts_ties_as_half() -> None:
    draws = [0.1, 0.3, 0.3, 0.5]
    assert percentile_among(0.3, draws) == 50.0  # 1 below + 2 ties / 2 -> 2 of 4
    assert percentile_among(0.6, draws) == 100.0
    assert percentile_among(0.0, draws) == 0.0
    assert percentile_among(0.2, draws) == 25.0
    assert percentile_among(0.3, [0.3]) == 50.0
    with pytest.raises(SumcircuitError, match="at least one draw"):
        percentile_among(0.3, [])


def test_support_verdict_thresholds() -> None:
    assert support_verdict(0.95) is True and support_verdict(1.0) is True
    assert support_verdict(0.05) is False and support_verdict(0.0) is False
    assert support_verdict(0.5) is None and support_verdict(0.94) is None


def _loop_topk(scores, band, k, min_in_band, n_boot, seed):
    """Independent reference: gather each resample's rows, rank with Python sorting."""
    n, n_layers = scores.shape
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    freq, hits = np.zeros(n_layers), 0
    for rows in idx:
        means = scores[rows].mean(axis=0)
        top = sorted(range(n_layers), key=lambda layer: (-means[layer], layer))[:k]
        freq[top] += 1
        hits += sum(band[t] for t in top) >= min_in_band
    return freq / n_boot, hits / n_boot


def _dominant(n_docs: int = 30, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = 0.1 + 0.01 * rng.random((n_docs, 12))
    scores[:, [2, 3, 4]] += 1.0  # band layers (relative depth 0.17-0.33) change most
    return scores


def test_topk_bootstrap_dominant_band_holds() -> None:
    band = np.array(band_mask(12))
    assert list(np.flatnonzero(band)) == [2, 3, 4, 5]
    boot = topk_bootstrap(_dominant(), band, n_boot=200, seed=0)
    assert boot["support"] == 1.0 and support_verdict(boot["support"]) is True
    assert set(boot["top_k"]) == {2, 3, 4} and boot["top_k_in_band"] == 3
    assert [boot["top_k_frequency"][x] for x in (2, 3, 4)] == [1.0, 1.0, 1.0]
    assert sum(boot["top_k_frequency"]) == pytest.approx(3.0)
    lo, hi = boot["support_ci95"]
    assert lo == pytest.approx(scipy.stats.binomtest(200, 200).proportion_ci(method="wilson").low)
    assert hi == 1.0


def test_topk_bootstrap_outside_band_fails() -> None:
    scores = _dominant()[:, ::-1]  # now layers 7, 8, 9 dominate
    boot = topk_bootstrap(scores, np.array(band_mask(12)), n_boot=100, seed=0)
    assert boot["support"] == 0.0 and support_verdict(boot["support"]) is False


def test_topk_bootstrap_noisy_is_undecided_and_matches_a_loop() -> None:
    # layer 2 (band) and 9 (out) always lead; the third place is a coin flip between layer 3
    # (band) and 10 (out): half the documents favour each, so the support is near one half.
    n = 20
    scores = np.zeros((n, 12))
    scores[:, 2], scores[:, 9] = 10.0, 9.0
    scores[: n // 2, 3] = 5.0
    scores[n // 2 :, 10] = 5.0
    band = np.array(band_mask(12))
    boot = topk_bootstrap(scores, band, n_boot=500, seed=3)
    assert boot["top_k"] == [2, 9, 3]  # full-sample tie 2.5 = 2.5: the lower layer first
    assert 0.3 < boot["support"] < 0.8 and support_verdict(boot["support"]) is None
    freq, support = _loop_topk(scores, band, 3, 2, 500, 3)
    assert boot["support"] == support
    assert boot["top_k_frequency"] == pytest.approx(list(freq))
    assert boot["top_k_frequency"][2] == boot["top_k_frequency"][9] == 1.0


def test_topk_bootstrap_rejects_bad_shapes() -> None:
    band = np.array(band_mask(12))
    with pytest.raises(SumcircuitError, match="12 layers"):
        topk_bootstrap(np.zeros((5, 11)), band)
    with pytest.raises(SumcircuitError, match="NaN"):
        topk_bootstrap(np.full((5, 12), np.nan), band)


def test_band_mask_keeps_edges() -> None:
    # 2/12 − 0.05 = 0.1167 ... 5/12 + 0.05 = 0.4667: in 30 layers, 4 (0.133) to 14 (0.467 = edge)
    assert list(np.flatnonzero(band_mask(30))) == list(range(4, 15))
    assert not any(band_mask(2))


def test_targeted_vs_random_draws_and_missing_loglik() -> None:
    lora = {
        "standard": {"rougeL": 0.30},
        "targeted": {"rougeL": 0.25, "loglik": -2.0},
        "random1": {"rougeL": 0.20, "loglik": -2.5},
        "random2": {"rougeL": 0.25},
        "random3": {"rougeL": 0.30, "loglik": -1.5},
        "randomness": {"rougeL": 0.0},  # not a draw
    }
    assert random_draw_arms(list(lora)) == ["random1", "random2", "random3"]
    out = targeted_vs_random(lora)
    assert out["rougeL"] == {
        "targeted": 0.25,
        "draws": [0.20, 0.25, 0.30],
        "arms": ["random1", "random2", "random3"],
        "percentile": 50.0,  # (1 below + ½ tie) / 3
    }
    assert out["loglik"]["draws"] == [-2.5, -1.5] and out["loglik"]["percentile"] == 50.0
    no_loglik = {k: {"rougeL": v["rougeL"]} for k, v in lora.items()}
    assert set(targeted_vs_random(no_loglik)) == {"rougeL"}
    assert targeted_vs_random({"targeted": {"rougeL": 0.2}, "standard": {"rougeL": 0.1}}) is None
    single = targeted_vs_random({"targeted": {"rougeL": 0.4}, "random": {"rougeL": 0.2}})
    assert single["rougeL"]["percentile"] == 100.0


def test_claims_carry_evidence() -> None:
    band_row = middle_layers_claim([2, 3, 4, 0], 12, per_doc_kl=_dominant(), n_boot=200)
    assert band_row["holds"] is True and band_row["evidence_data"]["support"] == 1.0
    assert "100.0% of 200 bootstrap resamples of the 30 documents" in band_row["evidence"]
    single = middle_layers_claim([2, 3, 5, 0], 12)
    assert single["holds"] is True and "single ranking" in single["ours"]
    assert single["evidence_data"]["method"] == "single ranking"

    undecided = entropy_claim(0.55, [0.4, 0.7], n_heads=100, n_docs=20)
    assert undecided["holds"] is None
    assert undecided["evidence_data"]["binomial"]["mde"] == pytest.approx(Z * 0.05)
    # (Z * 0.5 / 0.05)^2 = 784.9 -> 785 heads
    assert "at least 14.0%" in undecided["evidence"] and "785 heads" in undecided["evidence"]
    assert "entirely above 50%" in entropy_claim(0.7, [0.55, 0.8])["evidence"]

    lora = {
        "standard": {"rougeL": 0.2, "trainable_params": 100},
        "targeted": {"rougeL": 0.2, "trainable_params": 10},
        "random": {"rougeL": 0.1},
    }
    comparison = {"rougeL": {"mean_diff": 0.0, "ci95": [-0.02, 0.03], "n": 4}, "loglik": None}
    power = {"rougeL": paired_power(np.array([1.0, 2, 3, 4]) / 100)}
    row = lora_evidence(lora_claim(lora, comparison), comparison, power, targeted_vs_random(lora))
    assert row["holds"] is None and "smallest detectable difference" in row["evidence"]
    assert "0.0181" in row["evidence"] and "n ≈ 3" in row["evidence"]
    assert "percentile 100 of 1" in row["evidence"]
    assert row["evidence_data"]["power"]["rougeL"]["n"] == 4
    decided = {"rougeL": {"mean_diff": 0.05, "ci95": [0.01, 0.09], "n": 4}}
    row = lora_evidence(lora_claim(lora, decided), decided, power)
    assert row["holds"] is True and "ROUGE-L over 4 test documents lies above 0" in row["evidence"]
    # each outcome gets its own sentence: decided on the log-likelihood, open on ROUGE-L
    lora["standard"]["loglik"], lora["targeted"]["loglik"] = -2.9, -2.8
    mixed = comparison | {"loglik": {"mean_diff": 0.1, "ci95": [0.05, 0.15], "n": 4}}
    row = lora_evidence(lora_claim(lora, mixed), mixed, power)
    assert row["verdicts"] == {"rougeL": None, "loglik": True} and row["holds"] is None
    assert "held-out log-likelihood over 4 test documents lies above 0" in row["evidence"]
    assert "ROUGE-L over 4 test documents includes 0" in row["evidence"]
    assert lora_evidence(lora_claim({}, None), None)["evidence"] == "not run"
