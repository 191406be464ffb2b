"""Pinned tests for sumcircuit.metrics.representation."""

from __future__ import annotations

import math

import pytest
import torch

from sumcircuit.errors import SumcircuitError
from sumcircuit.metrics.representation import (
    LinearCKA,
    linear_cka,
    norm_sum,
    relative_weight_change,
    token_cosine,
)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_token_cosine_hand_computed():
    h_a = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])  # (1, 3, 2)
    h_b = torch.tensor([[[0.0, 2.0], [2.0, 2.0], [-1.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    total, count = token_cosine(h_a, h_b, mask)  # cos = 0, 1, (excluded)
    assert total.tolist() == pytest.approx([1.0])
    assert count.tolist() == [2]


def test_norm_sum_hand_computed():
    h = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 0.0], [6.0, 8.0]]])  # norms 5,1 / 0,10
    total, count = norm_sum(h, torch.tensor([[True, True], [False, True]]))
    assert total.tolist() == [6.0, 10.0]
    assert count.tolist() == [2, 1]
    with pytest.raises(SumcircuitError, match="mask"):
        norm_sum(h, torch.ones(2, 3, dtype=torch.bool))


def test_cka_identity_orthogonal_and_affine_invariance():
    x = _rand(200, 8)
    q, _ = torch.linalg.qr(_rand(8, 8, seed=1))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 2 * x + 3.0) == pytest.approx(1.0, abs=1e-12)
    assert 0.0 <= linear_cka(x, _rand(200, 5, seed=2)) < 0.2


def test_cka_hand_computed_small_case():
    # Centred x = [-1, 0, 1], y = [1, -2, 1]: orthogonal → CKA 0.
    x = torch.tensor([[0.0], [1.0], [2.0]])
    y = torch.tensor([[1.0], [-2.0], [1.0]])
    assert linear_cka(x, y) == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(linear_cka(torch.ones(3, 1), y))


def test_streaming_cka_equals_direct():
    x = _rand(300, 6, seed=3) + 50.0  # large mean: centring must come from the merge formula
    y = x @ _rand(6, 4, seed=4) + 0.5 * _rand(300, 4, seed=5)
    acc = LinearCKA()
    for start in (0, 7, 100, 101, 250):
        end = {0: 7, 7: 100, 100: 101, 101: 250, 250: 300}[start]
        acc.update(x[start:end], y[start:end])
    assert acc.n == 300
    assert acc.value() == pytest.approx(linear_cka(x, y), rel=1e-10)


def test_streaming_cka_with_mask_and_merge():
    hx, hy = _rand(4, 5, 6, seed=6), _rand(4, 5, 3, seed=7)
    hy = hy + hx[..., :3]
    mask = torch.rand(4, 5, generator=torch.Generator().manual_seed(8)) > 0.3
    a, b = LinearCKA(), LinearCKA()
    a.update(hx[:2], hy[:2], mask[:2])
    b.update(hx[2:], hy[2:], mask[2:])
    a.merge(b)
    assert a.n == int(mask.sum())
    assert a.value() == pytest.approx(linear_cka(hx[mask], hy[mask]), rel=1e-10)


def test_streaming_cka_float32_compute_is_close():
    x, y = _rand(500, 8, seed=9).float(), _rand(500, 8, seed=10).float()
    y = y + x
    acc = LinearCKA(compute_dtype=torch.float32)
    for i in range(0, 500, 64):
        acc.update(x[i : i + 64], y[i : i + 64])
    assert acc.value() == pytest.approx(linear_cka(x, y), rel=1e-5)


def test_linear_cka_errors():
    with pytest.raises(SumcircuitError, match="no tokens"):
        LinearCKA().value()
    with pytest.raises(SumcircuitError, match="same"):
        linear_cka(torch.ones(3, 2), torch.ones(4, 2))


def test_relative_weight_change():
    w = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # ‖W‖_F = 5
    w_ft = w + torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    assert relative_weight_change(w, w_ft) == pytest.approx(0.2)
    assert relative_weight_change(w, w) == 0.0
    with pytest.raises(SumcircuitError, match="same shape"):
        relative_weight_change(w, w[:1])
    with pytest.raises(SumcircuitError, match="all zeros"):
        relative_weight_change(torch.zeros(2), torch.ones(2))
