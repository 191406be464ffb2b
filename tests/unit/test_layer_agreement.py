"""Agreement of two layer rankings: relative depth, binning into the shallower model's layers,
Jaccard, Spearman and Kendall on hand-computed cases, and the bootstrap over documents."""

import numpy as np
import pytest
from scipy import stats

from sumcircuit.errors import SumcircuitError
from sumcircuit.report.layer_agreement import (
    LayerParts,
    agreement,
    agreement_ci,
    depth_bins,
    jaccard,
    jaccard_rows,
    kendall_rows,
    relative_depth,
    spearman_rows,
    to_common_depth,
    top_k_rows,
)
from sumcircuit.stats.bootstrap import resample_counts


def test_relative_depth_is_the_middle_of_each_layers_slice():
    assert relative_depth(4).tolist() == [0.125, 0.375, 0.625, 0.875]
    assert relative_depth(1).tolist() == [0.5]
    with pytest.raises(SumcircuitError, match="at least one layer"):
        relative_depth(0)


def test_depth_bins_by_hand():
    # 5 layers at 0.1, 0.3, 0.5, 0.7, 0.9 into 3 bins [0, 1/3), [1/3, 2/3), [2/3, 1)
    assert depth_bins(5, 3).tolist() == [0, 0, 1, 2, 2]
    # 6 layers into 4 bins: 4(l + 0.5)/6 = 0.33, 1.0, 1.67, 2.33, 3.0, 3.67
    assert depth_bins(6, 4).tolist() == [0, 1, 1, 2, 3, 3]
    assert depth_bins(4, 3).tolist() == [0, 1, 1, 2]  # 0.375, 1.125, 1.875, 2.625
    assert depth_bins(7, 7).tolist() == list(range(7))  # same depth: the identity
    with pytest.raises(SumcircuitError, match="shallower"):
        depth_bins(3, 4)


def test_every_bin_of_the_shallower_model_gets_a_layer():
    for deep in range(1, 41):
        for shallow in range(1, deep + 1):
            assert set(depth_bins(deep, shallow)) == set(range(shallow)), (deep, shallow)


def test_scores_binned_by_mean():
    assert to_common_depth([1.0, 2.0, 3.0, 4.0, 5.0], 3).tolist() == [1.5, 3.0, 4.5]
    rows = to_common_depth(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 6.0, 1.0]]), 3)
    assert rows.tolist() == [[1.0, 2.5, 4.0], [0.0, 3.0, 1.0]]


def test_jaccard_by_hand():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard({1}, {2}) == 0.0
    assert jaccard({5, 7}, {7, 5}) == 1.0
    # rows: {1,2,3} vs {2,3,4}; {0,0} = {0} vs {0, 1}
    got = jaccard_rows(np.array([[1, 2, 3], [0, 0, 0]]), np.array([[2, 3, 4], [0, 1, 1]]), 5)
    assert got.tolist() == [0.5, 0.5]


def test_top_k_rows_breaks_ties_to_the_lower_layer():
    assert top_k_rows(np.array([[1.0, 3.0, 3.0, 2.0]]), 2).tolist() == [[1, 2]]


def test_spearman_and_kendall_by_hand():
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    b = np.array([[1.0, 3.0, 2.0, 4.0]])
    # d = (0, 1, 1, 0): rho = 1 - 6*2 / (4*15) = 0.8; 5 concordant pairs, 1 discordant: 4/6
    assert spearman_rows(a, b)[0] == pytest.approx(0.8)
    assert kendall_rows(a, b)[0] == pytest.approx(4 / 6)
    # tau-b with a tie in a: 5 concordant pairs of 6, one tied: 5 / sqrt(5 * 6)
    tied = np.array([[1.0, 1.0, 2.0, 3.0]])
    assert kendall_rows(tied, a)[0] == pytest.approx(5 / np.sqrt(30))
    assert np.isnan(spearman_rows(np.ones((1, 4)), a)[0])
    assert np.isnan(kendall_rows(np.ones((1, 4)), a)[0])


def test_row_correlations_equal_scipys_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(300, 9)).astype(float)  # many ties
    b = rng.integers(0, 5, size=(300, 9)).astype(float)
    rho = [stats.spearmanr(x, y).statistic for x, y in zip(a, b, strict=True)]
    tau = [stats.kendalltau(x, y).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(spearman_rows(a, b), rho, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kendall_rows(a, b), tau, rtol=1e-12, atol=1e-12)


def test_agreement_across_depths_by_hand():
    a = np.array([0.0, 5.0, 1.0, 4.0, 3.0])  # 5 layers -> bins 0,0,1,2,2 -> [2.5, 1.0, 3.5]
    b = np.array([0.0, 2.0, 1.0])  # 3 layers
    got = agreement(a, b, top_a=[1, 3], top_b=[1, 2])
    # top-2: a's layers 1, 3 fall in bins 0, 2; b's are layers 1, 2: |{2}| / |{0, 1, 2}|
    assert got["top_k_bins"] == [[0, 2], [1, 2]]
    assert got["jaccard"] == pytest.approx(1 / 3)
    # ranks (2, 1, 3) vs (1, 3, 2): d = (1, -2, 1), rho = 1 - 6*6 / (3*8) = -0.5
    assert got["spearman"] == pytest.approx(-0.5)
    # pairs: (0,1) discordant, (0,2) concordant, (1,2) discordant
    assert got["kendall"] == pytest.approx(-1 / 3)
    # the deeper model's three layers 1, 3, 4 fall in two bins
    assert agreement(a, b, [1, 3, 4], [0, 1, 2])["top_k_bins"] == [[0, 2], [0, 1, 2]]


def _parts(docs, num, den=None, absolute=False, data=None):
    num = np.asarray(num, dtype=float)
    return LayerParts(
        tuple(docs), num, None if den is None else np.asarray(den, float), absolute, data
    )


def test_layer_parts_scores_mean_ratio_and_absolute():
    parts = _parts("ab", [[1.0, -4.0], [3.0, 0.0]])
    assert parts.scores(np.ones((1, 2))).tolist() == [[2.0, -2.0]]
    assert parts.scores(np.array([[2.0, 0.0]])).tolist() == [[1.0, -4.0]]  # doc a twice
    absolute = _parts("ab", [[1.0, -4.0], [3.0, 0.0]], absolute=True)
    assert absolute.scores(np.ones((1, 2))).tolist() == [[2.0, 2.0]]
    ratio = _parts("ab", [[1.0, 2.0], [3.0, 2.0]], den=[[1.0, 1.0], [3.0, 3.0]])
    assert ratio.scores(np.ones((1, 2))).tolist() == [[1.0, 1.0]]  # (1+3)/(1+3), (2+2)/(1+3)
    aligned = ratio.aligned(("b", "a"))
    assert aligned.num.tolist() == [[3.0, 2.0], [1.0, 2.0]] and aligned.den[0].tolist() == [3, 3]


def test_same_documents_needs_the_same_ids_and_data():
    assert _parts("ab", [[1.0], [2.0]]).same_documents(_parts("ba", [[1.0], [2.0]]))
    assert not _parts("ab", [[1.0], [2.0]]).same_documents(_parts("ac", [[1.0], [2.0]]))
    assert not _parts("ab", [[1.0], [2.0]], data="x").same_documents(
        _parts("ab", [[1.0], [2.0]], data="y")
    )


def _random_parts(rng, docs, n_layers):
    return _parts(docs, rng.normal(size=(len(docs), n_layers)) + np.arange(n_layers))


def test_paired_bootstrap_resamples_the_same_documents_in_both_runs():
    rng = np.random.default_rng(1)
    docs = [f"d{i}" for i in range(12)]
    a = _random_parts(rng, docs, 6)
    b = _random_parts(rng, docs, 4)
    shuffled = b.aligned(tuple(reversed(docs)))
    got = agreement_ci(a, shuffled, 2, n_boot=200, seed=3)
    assert got["resampling"] == "paired" and got["n_docs"] == [12, 12]
    # the same CI from an independent computation: one resample matrix, scipy per resample
    counts = resample_counts(12, 200, 3)
    boot_a = counts @ a.num / 12
    boot_b = counts @ b.num / 12
    rho = [
        stats.spearmanr(to_common_depth(x, 4), y).statistic
        for x, y in zip(boot_a, boot_b, strict=True)
    ]
    assert got["spearman"] == pytest.approx(tuple(np.quantile(rho, [0.025, 0.975])))
    assert got == agreement_ci(a, b, 2, n_boot=200, seed=3)  # row order does not matter
    same = agreement_ci(a, a, 2, n_boot=200, seed=3)
    assert same["jaccard"] == (1.0, 1.0) and same["kendall"] == (1.0, 1.0)


def test_independent_bootstrap_for_different_documents():
    rng = np.random.default_rng(2)
    a = _random_parts(rng, [f"a{i}" for i in range(10)], 5)
    b = _random_parts(rng, [f"b{i}" for i in range(7)], 5)
    got = agreement_ci(a, b, 2, n_boot=200, seed=0)
    assert got["resampling"] == "independent" and got["n_docs"] == [10, 7]
    counts_a, counts_b = resample_counts(10, 200, 0), resample_counts(7, 200, 1)
    tau = kendall_rows(counts_a @ a.num / 10, counts_b @ b.num / 7)
    assert got["kendall"] == pytest.approx(tuple(np.quantile(tau, [0.025, 0.975])))
    lo, hi = got["jaccard"]
    assert 0.0 <= lo <= hi <= 1.0
