"""Hand-computed 3-token cases for sumcircuit.metrics.attention."""

from __future__ import annotations

import math

import pytest
import torch

from sumcircuit.errors import SumcircuitError
from sumcircuit.metrics.attention import (
    causal_key_counts,
    entropy,
    js,
    kl,
    normalized_entropy,
    region_mean,
)

LN2, LN3 = math.log(2), math.log(3)


def uniform_causal(T: int = 3, dtype=torch.float64) -> torch.Tensor:
    """(1, 1, T, T): query i attends uniformly to keys 0..i."""
    tri = torch.tril(torch.ones(T, T, dtype=dtype))
    return (tri / tri.sum(-1, keepdim=True))[None, None]


def one_hot_causal(T: int = 3, dtype=torch.float64) -> torch.Tensor:
    """(1, 1, T, T): every query attends only to key 0 (an attention sink)."""
    a = torch.zeros(T, T, dtype=dtype)
    a[:, 0] = 1.0
    return a[None, None]


def test_entropy_uniform_causal():
    h = entropy(uniform_causal())
    assert h.shape == (1, 1, 3)
    torch.testing.assert_close(h[0, 0], torch.tensor([0.0, LN2, LN3], dtype=torch.float64))


def test_entropy_one_hot_is_zero():
    assert torch.equal(entropy(one_hot_causal()), torch.zeros(1, 1, 3, dtype=torch.float64))


def test_entropy_half_precision_computed_in_float32():
    h = entropy(uniform_causal(dtype=torch.bfloat16))
    assert h.dtype == torch.float32
    torch.testing.assert_close(h[0, 0], torch.tensor([0.0, LN2, LN3]), atol=1e-2, rtol=1e-2)


def test_normalized_entropy_uniform_and_shapes():
    attn = uniform_causal().expand(2, 4, 3, 3)  # (B=2, H=4, 3, 3)
    expected = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64).expand(2, 4, 3)
    torch.testing.assert_close(normalized_entropy(attn, torch.tensor([1, 2, 3])), expected)
    torch.testing.assert_close(normalized_entropy(attn, torch.tensor([[1, 2, 3]] * 2)), expected)
    with pytest.raises(SumcircuitError, match="n_keys"):
        normalized_entropy(attn, torch.tensor([1, 2]))


def test_normalized_entropy_with_left_padding():
    # Row 0: one pad then 2 tokens; the query at position 2 sees 2 real keys uniformly.
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    counts = causal_key_counts(mask)
    assert counts.tolist() == [[0, 1, 2], [1, 2, 3]]
    attn = torch.zeros(2, 1, 3, 3, dtype=torch.float64)
    attn[0, 0, 1, 1] = 1.0
    attn[0, 0, 2, 1:] = 0.5
    attn[0, 0, 0, 0] = 1.0  # pad query: value irrelevant, count 0 → defined as 0
    attn[1] = uniform_causal()[0]
    out = normalized_entropy(attn, counts)
    torch.testing.assert_close(out[:, 0], torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).double())


def test_kl_of_identical_rows_is_exactly_zero():
    p = torch.softmax(torch.randn(2, 3, 4, 4, dtype=torch.float64), -1) * torch.tril(
        torch.ones(4, 4, dtype=torch.float64)
    )
    p = p / p.sum(-1, keepdim=True)
    assert torch.equal(kl(p, p), torch.zeros(2, 3, 4, dtype=torch.float64))


def test_kl_hand_computed():
    p = torch.tensor([0.5, 0.5], dtype=torch.float64).view(1, 1, 1, 2)
    q = torch.tensor([0.9, 0.1], dtype=torch.float64).view(1, 1, 1, 2)
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # = 0.5108256...
    assert kl(p, q).item() == pytest.approx(expected, rel=1e-14)
    assert expected == pytest.approx(0.5108256237659907)


def test_kl_zero_in_p_contributes_nothing_and_zero_in_q_is_finite():
    p = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2)
    q = torch.tensor([0.25, 0.75], dtype=torch.float64).view(1, 1, 1, 2)
    assert kl(p, q).item() == pytest.approx(math.log(4.0))
    out = kl(q, p, eps=1e-12)  # q has mass where p is 0: true KL is +inf
    assert torch.isfinite(out).all()
    expected = 0.25 * math.log(0.25) + 0.75 * math.log(0.75 / 1e-12)
    assert out.item() == pytest.approx(expected)


def test_js_symmetric_bounded_and_hand_computed():
    p = torch.softmax(torch.randn(2, 2, 5, 5, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(2, 2, 5, 5, dtype=torch.float64), -1)
    torch.testing.assert_close(js(p, q), js(q, p))
    assert (js(p, q) <= LN2).all() and (js(p, q) >= 0).all()
    # Disjoint supports reach the bound ln 2.
    a = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2)
    b = torch.tensor([0.0, 1.0], dtype=torch.float64).view(1, 1, 1, 2)
    assert js(a, b).item() == pytest.approx(LN2, rel=1e-14)
    assert torch.equal(js(p, p), torch.zeros(2, 2, 5, dtype=torch.float64))
    # [0.5, 0.5] vs [0.9, 0.1]: m = [0.7, 0.3]
    x = torch.tensor([0.5, 0.5], dtype=torch.float64).view(1, 1, 1, 2)
    y = torch.tensor([0.9, 0.1], dtype=torch.float64).view(1, 1, 1, 2)
    expected = 0.5 * (
        0.5 * math.log(0.5 / 0.7)
        + 0.5 * math.log(0.5 / 0.3)
        + 0.9 * math.log(0.9 / 0.7)
        + 0.1 * math.log(0.1 / 0.3)
    )
    assert js(x, y).item() == pytest.approx(expected, rel=1e-12)


def test_region_mean_excludes_masked_positions():
    values = torch.tensor(
        [[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]], [[4.0, float("nan"), 6.0], [0.0, 0.0, 0.0]]]
    )  # (B=2, H=2, Tq=3)
    mask = torch.tensor([[True, False, True], [True, False, False]])
    total, count = region_mean(values, mask)
    assert total.tolist() == [[4.0, 40.0], [4.0, 0.0]]
    assert count.tolist() == [2, 1]
    with pytest.raises(SumcircuitError, match="mask"):
        region_mean(values, mask[:, :2])


def test_region_mean_of_entropy_on_summary_region():
    h = entropy(uniform_causal().expand(1, 2, 3, 3))  # (1, 2, 3): [0, ln2, ln3] per head
    total, count = region_mean(h, torch.tensor([[False, True, True]]))
    torch.testing.assert_close(total / count[:, None], torch.full((1, 2), (LN2 + LN3) / 2).double())
