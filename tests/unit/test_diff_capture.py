"""Pure pieces of the diff: row selection, attention rows from q/k, per-document region sums."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from sumcircuit.analysis.diff.accumulate import HEAD_METRICS, DiffAccumulator, head_region_sums
from sumcircuit.analysis.diff.capture import Rows, gather_rows, row_probs
from sumcircuit.analysis.diff.stats import HEAD_COLUMNS, LAYER_COLUMNS, summarize


def test_rows_from_mask_gathers_region_positions_in_order():
    region = torch.tensor([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    rows = Rows.from_mask(region)
    assert rows.index.tolist() == [[1, 2, 4], [0, 0, 0], [0, 0, 0]]
    assert rows.valid.tolist() == [[True, True, True], [False] * 3, [True, False, False]]
    x = torch.arange(3 * 5).view(3, 5, 1).float()  # (B, T, D)
    assert gather_rows(x, rows, 1)[0, :, 0].tolist() == [1.0, 2.0, 4.0]


def test_row_probs_matches_hand_computation_on_three_tokens():
    # One head, d = 1: q = [1, 2, 3], k = [0, 1, 2], scale 1, causal.
    q = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 3, 1)
    k = torch.tensor([0.0, 1.0, 2.0]).view(1, 1, 3, 1)
    mask = torch.tril(torch.ones(3, 3, dtype=torch.bool)).view(1, 1, 3, 3)
    rows = Rows.from_mask(torch.ones(1, 3, dtype=torch.bool))
    p = row_probs(gather_rows(q, rows, 2), k, gather_rows(mask, rows, 2), 1.0)[0, 0]
    # Row 0: only key 0. Row 1: logits 2*[0, 1]. Row 2: logits 3*[0, 1, 2].
    e1 = [1.0, math.e**2]
    e2 = [1.0, math.e**3, math.e**6]
    expected = [
        [1.0, 0.0, 0.0],
        [e1[0] / sum(e1), e1[1] / sum(e1), 0.0],
        [x / sum(e2) for x in e2],
    ]
    assert torch.allclose(p, torch.tensor(expected), atol=1e-6)
    assert p[0, 1] == 0.0 and p[1, 2] == 0.0  # masked keys are exactly zero
    # Entropy by hand of row 2, and region sums over rows 1..2.
    h2 = -sum(x / sum(e2) * math.log(x / sum(e2)) for x in e2)
    sums = head_region_sums(
        p[None, None], p[None, None], torch.tensor([[1, 2, 3]]), torch.tensor([[False, True, True]])
    )
    h1 = -sum(x / sum(e1) * math.log(x / sum(e1)) for x in e1)
    assert sums["entropy_base"].item() == pytest.approx(h1 + h2, abs=1e-6)
    assert sums["norm_entropy_base"].item() == pytest.approx(
        h1 / math.log(2) + h2 / math.log(3), abs=1e-6
    )
    assert sums["kl_base_ft"].item() == 0.0 and sums["js"].item() == 0.0


def test_row_probs_grouped_query_heads_read_their_kv_head():
    torch.manual_seed(0)
    B, H, Hkv, T, d = 2, 6, 2, 5, 4
    q, k = torch.randn(B, H, T, d), torch.randn(B, Hkv, T, d)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool)).expand(B, 1, T, T)
    rows = Rows.from_mask(torch.ones(B, T, dtype=torch.bool))
    got = row_probs(q, k, mask, 0.5)
    k_full = k.repeat_interleave(H // Hkv, dim=1)  # head h reads KV head h // 3
    scores = (q @ k_full.transpose(-1, -2) * 0.5).masked_fill(~mask, float("-inf"))
    assert torch.allclose(got, torch.softmax(scores, -1), atol=1e-6)
    assert rows.width == T


def _accumulator_with(counts, delta_sign):
    acc = DiffAccumulator(len(counts), 2, 3)
    acc.counts[:] = counts
    rng = np.random.default_rng(0)
    for m in HEAD_METRICS:
        acc.head_sums[m][:] = (
            rng.uniform(1.0, 2.0, size=(len(counts), 2, 3)) * np.asarray(counts)[:, None, None]
        )
    acc.head_sums["entropy_ft"] = (
        acc.head_sums["entropy_base"] + delta_sign * np.asarray(counts)[:, None, None] * 0.1
    )
    for m in acc.layer_sums:
        acc.layer_sums[m][:] = np.asarray(counts)[:, None] * 1.0
    return acc


def test_summarize_excludes_documents_without_region_and_has_no_nan():
    counts = [3, 0, 2, 4, 5, 1, 2, 3, 4, 2, 3, 1, 2, 5, 3]
    acc = _accumulator_with(counts, delta_sign=-1.0)
    heads, layers, summary, keep = summarize(acc, np.zeros((2, 3)), np.zeros(2), n_boot=200, seed=0)
    assert list(heads.columns) == HEAD_COLUMNS and list(layers.columns) == LAYER_COLUMNS
    assert summary["excluded_docs"] == 1 and summary["n_docs"] == 14 and not keep[1]
    assert summary["n_tokens"] == sum(counts)
    assert not heads.drop(columns=[]).isna().any().any()
    assert np.allclose(heads["delta_entropy"], -0.1)
    assert summary["frac_heads_entropy_decreased"] == 1.0
    assert summary["frac_heads_sig_decreased"] == 1.0  # 14 docs, all lower: p = 2^-13 each
    assert heads[["layer", "head"]].values.tolist() == [
        [0, 0],
        [0, 1],
        [0, 2],
        [1, 0],
        [1, 1],
        [1, 2],
    ]
    assert isinstance(pd.DataFrame(summary["layer_ci95"]["kl_mean"]), pd.DataFrame)
