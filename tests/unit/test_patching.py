"""Pure functions of the patching core: pinned on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from sumcircuit.analysis.causal.patching import head_columns, patch_columns, summary_loglik
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
