"""Pinned tests for sumcircuit.evaluation.rouge (numbers worked out by hand)."""

from __future__ import annotations

import json

import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.rouge import (
    METRICS,
    aggregate,
    compare,
    score_pairs,
    split_sentences,
)


def test_identical_strings_score_one():
    frame = score_pairs(
        ["The cat sat on the mat. It purred."], ["The cat sat on the mat. It purred."]
    )
    assert list(frame.columns) == list(METRICS)
    assert frame.iloc[0].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_hand_computed_case():
    # unigrams: {the, cat} shared of 3 each → P = R = F = 2/3
    # bigrams: {"the cat"} shared of 2 each → 1/2; LCS "the cat" = 2 of 3 → 2/3
    row = score_pairs(["the cat sat"], ["the cat ran"]).iloc[0]
    assert row["rouge1"] == pytest.approx(2 / 3)
    assert row["rouge2"] == pytest.approx(1 / 2)
    assert row["rougeL"] == pytest.approx(2 / 3)
    assert row["rougeLsum"] == pytest.approx(2 / 3)  # one line: Lsum = L


def test_stemming_matches_inflections():
    assert score_pairs(["running"], ["run"]).iloc[0]["rouge1"] == 1.0


def test_lsum_uses_sentences_on_single_line_text():
    # Sentences swapped. Token-level LCS of "the cat sat the dog ran" and
    # "the dog ran the cat sat" is 3 of 6 → rougeL = 0.5; summary-level LCS matches each
    # reference sentence entirely with its predicted counterpart → rougeLsum = 1.0.
    row = score_pairs(["The dog ran. The cat sat."], ["The cat sat. The dog ran."]).iloc[0]
    assert row["rougeL"] == pytest.approx(0.5)
    assert row["rougeLsum"] == pytest.approx(1.0)


def test_split_sentences():
    assert split_sentences("One. Two!  Three? four") == "One.\nTwo!\nThree?\nfour"
    assert split_sentences("line one\nline two.\n\n") == "line one\nline two."
    assert split_sentences("No split in 3.5 here") == "No split in 3.5 here"
    assert split_sentences("") == ""


def test_aggregate_shape_and_values():
    frame = score_pairs(["the cat sat", "a b c", "x y"], ["the cat ran", "a b c", "p q"])
    agg = aggregate(frame, n_boot=200)
    assert set(agg) == set(METRICS) | {"n"}
    assert agg["n"] == 3
    assert agg["rouge1"]["f"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    for m in METRICS:
        lo, hi = agg[m]["ci95"]
        assert lo <= agg[m]["f"] <= hi
        assert set(agg[m]) == {"f", "ci95"}
    json.dumps(agg)  # JSON-ready
    assert aggregate(frame, n_boot=200, seed=3) == aggregate(frame, n_boot=200, seed=3)


def test_compare_paired_difference():
    refs = ["the cat sat on the mat", "a dog ran in the park", "rain fell all day"]
    good = score_pairs(refs, refs)
    bad = score_pairs(["the cat", "a dog", "rain"], refs)
    out = compare(good, bad, n_boot=200)
    assert out["n"] == 3
    diff = (good - bad)["rouge1"].mean()
    assert out["rouge1"]["mean_diff"] == pytest.approx(diff)
    assert out["rouge1"]["ci95"][0] > 0
    json.dumps(out)


def test_errors_are_clear():
    with pytest.raises(SumcircuitError, match="one to one"):
        score_pairs(["a"], ["a", "b"])
    with pytest.raises(SumcircuitError, match="empty"):
        score_pairs([], [])
    with pytest.raises(SumcircuitError, match="not str"):
        score_pairs([None], ["a"])  # type: ignore[list-item]
    frame = score_pairs(["a", "b"], ["a", "b"])
    with pytest.raises(SumcircuitError, match="same examples"):
        compare(frame, frame.iloc[:1])
