"""Pure functions of the patching core and of validate: pinned on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sumcircuit.analysis.patching import head_columns, patch_columns, summary_loglik
from sumcircuit.analysis.validate import percentile_ci, percentile_rank, random_sets, recovered
from sumcircuit.errors import SumcircuitError


def test_head_columns_marks_exactly_the_heads_slices() -> None:
    mask = head_columns([0, 2], n_heads=3, head_dim=2)
    assert mask.tolist() == [True, True, False, False, True, True]
    assert not head_columns([], n_heads=3, head_dim=2).any()


def test_patch_columns_copies_source_values_exactly() -> None:
    x = torch.arange(12.0).reshape(1, 2, 6)  # (B, T, H*d) with H=3, d=2
    src = -torch.arange(12.0).reshape(1, 2, 6)
    out = patch_columns(x, src, head_columns([1], 3, 2))
    assert torch.equal(out[..., 2:4], src[..., 2:4])
    assert torch.equal(out[..., :2], x[..., :2]) and torch.equal(out[..., 4:], x[..., 4:])
    mean = torch.tensor([9.0, 8, 7, 6, 5, 4])  # (D,) broadcast to every position
    out = patch_columns(x, mean, head_columns([2], 3, 2))
    assert out[0, :, 4:].tolist() == [[5.0, 4.0], [5.0, 4.0]]


def test_patch_columns_rejects_a_source_of_another_width() -> None:
    with pytest.raises(SumcircuitError, match="same architecture"):
        patch_columns(torch.zeros(1, 2, 6), torch.zeros(4), torch.ones(6, dtype=torch.bool))


def test_summary_loglik_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]])  # (N=3, V=2)
    labels = torch.tensor([0, 0, 1])
    rows = torch.tensor([0, 1, 1])
    m = summary_loglik(logits, labels, rows, 3)
    # doc 0: log 1/2; doc 1: mean(log 3/4, log 1/2); doc 2: no summary tokens
    assert m[0].item() == pytest.approx(math.log(0.5), abs=1e-7)
    assert m[1].item() == pytest.approx((math.log(0.75) + math.log(0.5)) / 2, abs=1e-7)
    assert math.isnan(m[2].item())


def test_percentile_rank_counts_ties_as_half() -> None:
    assert percentile_rank(np.float64(0.5), np.array([0.1, 0.5, 0.9, 0.2])) == pytest.approx(62.5)
    assert percentile_rank(np.array([1.0, -1.0]), np.array([[0.0, 0.0], [0.0, 0.0]])).tolist() == [
        100.0,
        0.0,
    ]


def test_random_sets_are_distinct_seeded_and_never_the_circuit() -> None:
    sets = random_sets(list(range(6)), 2, 10, (1, 3), seed=5)
    assert len(set(sets)) == 10 and (1, 3) not in sets
    assert all(len(s) == 2 and list(s) == sorted(s) for s in sets)
    assert sets == random_sets(list(range(6)), 2, 10, (1, 3), seed=5)
    assert sets != random_sets(list(range(6)), 2, 10, (1, 3), seed=6)
    big = random_sets(list(range(200)), 5, 30, (0, 1, 2, 3, 4), seed=0)  # rejection path
    assert len(set(big)) == 30 and (0, 1, 2, 3, 4) not in big


def test_random_sets_too_many_names_both_numbers() -> None:
    with pytest.raises(SumcircuitError, match=r"--controls 15 .* only 14 distinct"):
        random_sets(list(range(6)), 2, 15, (1, 3), seed=0)


def test_recovered_is_a_ratio_of_sums_and_refuses_no_change() -> None:
    num = np.array([[1.0, 0.0], [3.0, 2.0]])
    den = np.array([2.0, 2.0])
    value, lo, hi = recovered(num, den, n_boot=200, seed=0, min_delta=1e-6)
    assert value.tolist() == [1.0, 0.5]
    assert np.all(lo <= value) and np.all(value <= hi)
    with pytest.raises(SumcircuitError, match="nothing to explain"):
        recovered(num, np.array([1e-9, -1e-9]), n_boot=200, seed=0, min_delta=1e-6)


def test_percentile_ci_of_a_clearly_best_circuit_is_100() -> None:
    rng = np.random.default_rng(0)
    den = 1.0 + rng.random(30)
    num = np.column_stack([den, 0.1 * rng.random((30, 5))])  # circuit recovers everything
    assert percentile_ci(num, den, n_boot=200, seed=0) == (100.0, 100.0)
