"""Areas under faithfulness curves, their bootstrap, and the choice of the most faithful locator
with its tie rule: hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from sumcircuit.analysis.causal.areas import (
    area,
    boot_fractions,
    choice_sentence,
    choose,
    paired_difference,
)
from sumcircuit.stats import resample_counts


def test_area_is_the_trapezoid_from_the_empty_set() -> None:
    # f(0) = 0, f(0.5) = 1, f(1) = 1: 0.25 + 0.5
    assert area([0.5, 1.0], np.array([1.0, 1.0]), 0.0) == pytest.approx(0.75)
    # |1 − f| starts at 1: (1 + 0)/2 · 0.5 + 0
    assert area([0.5, 1.0], np.array([0.0, 0.0]), 1.0) == pytest.approx(0.25)
    batched = area([0.5, 1.0], np.array([[1.0, 1.0], [0.0, 2.0]]), 0.0)
    np.testing.assert_allclose(batched, [0.75, 0.5])


def test_boot_fractions_are_ratios_of_resampled_sums() -> None:
    num = np.array([[1.0, 2.0], [3.0, 0.0], [0.0, 1.0]])
    den = np.array([1.0, 2.0, 3.0])
    boot = boot_fractions(num, den, n_boot=50, seed=3)
    counts = resample_counts(3, 50, 3)
    np.testing.assert_allclose(boot, (counts @ num) / (counts @ den)[:, None])


def test_a_clear_winner_is_significant_and_a_tie_goes_to_the_cheaper() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.01, 500)
    boot = {"exact": 0.9 + noise, "kl": 0.5 + noise, "atp": 0.88 + noise[::-1]}
    cpr = {"exact": 0.9, "kl": 0.5, "atp": 0.88}
    cmd = dict.fromkeys(cpr, 0.1)
    cost = {"kl": 0, "atp": 1, "exact": 3}
    clear = choose({k: cpr[k] for k in ("exact", "kl")}, cmd, boot, cost)
    assert (clear["best_cpr"], clear["runner_up"], clear["winner"]) == ("exact", "kl", "exact")
    assert clear["significant"] is True and clear["difference"]["value"] == pytest.approx(0.4)
    tied = choose(cpr, cmd, boot, cost)  # atp is within noise of exact: the cheaper one wins
    assert tied["best_cpr"] == "exact" and tied["runner_up"] == "atp"
    assert tied["significant"] is False and tied["tied"] == ["exact", "atp"]
    assert tied["winner"] == "atp"
    assert tied["vs_best"]["kl"]["ci95"][0] > 0  # kl is significantly worse: not tied
    assert choose({}, {}, {}, {}) is None
    alone = choose({"kl": 0.5}, {"kl": 0.1}, {"kl": noise}, cost)
    assert alone["winner"] == "kl" and alone["significant"] is None


def test_paired_difference_p_value_and_ci() -> None:
    d = paired_difference(np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(4), 2.5)
    assert d["value"] == 2.5 and d["p_value"] == 0.0
    assert d["ci95"][0] == pytest.approx(np.quantile([1.0, 2, 3, 4], 0.025))
    same = paired_difference(np.ones(4), np.ones(4), 0.0)
    assert same["p_value"] == 1.0


def test_choice_sentence_says_whether_the_winner_is_significant() -> None:
    noise = np.random.default_rng(1).normal(0.0, 0.01, 400)
    boot = {"exact": 0.9 + noise, "kl": 0.5 + noise, "atp": 0.89 + noise[::-1]}
    cost = {"kl": 0, "atp": 1, "exact": 3}
    cmd = dict.fromkeys(boot, 0.0)
    clear = choice_sentence(choose({"exact": 0.9, "kl": 0.5}, cmd, boot, cost))
    assert clear.startswith("most faithful: exact, significantly above the runner-up")
    tied = choice_sentence(choose({"exact": 0.9, "atp": 0.89}, cmd, boot, cost))
    assert "atp, not significantly better" in tied and "tie rule" in tied
    assert "no CIs" in choice_sentence({"winner": "kl"})
