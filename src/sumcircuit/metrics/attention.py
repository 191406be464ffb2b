"""Pure tensor functions on attention maps: entropy, KL, Jensen–Shannon, region sums.

Shapes: B batch, H heads, Tq query positions, Tk key positions. An attention row
``attn[b, h, i, :]`` is a probability vector over keys (causal: zero beyond key i).
Half-precision inputs (fp16/bf16) are computed in float32; float32/float64 keep their dtype.
All logs are natural (nats).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sumcircuit.errors import SumcircuitError

__all__ = [
    "causal_key_counts",
    "entropy",
    "js",
    "kl",
    "normalized_entropy",
    "region_mean",
]

LN2 = math.log(2.0)


def _compute_dtype(x: Tensor) -> Tensor:
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    if not x.is_floating_point():
        raise SumcircuitError(f"attention must be a floating-point tensor; got {x.dtype}.")
    return x


def _check_4d(x: Tensor, name: str) -> None:
    if x.dim() != 4:
        raise SumcircuitError(f"{name} must have shape (B, H, Tq, Tk); got {tuple(x.shape)}.")


def entropy(attn: Tensor) -> Tensor:
    """Entropy of each attention row: H = −Σ_k a_k ln a_k, with 0·ln 0 = 0.

    attn: (B, H, Tq, Tk) → (B, H, Tq), nats. Uses ``torch.special.xlogy`` so zero weights
    (causally masked keys) contribute exactly 0.
    """
    _check_4d(attn, "attn")
    a = _compute_dtype(attn)
    return -torch.special.xlogy(a, a).sum(dim=-1)  # (B, H, Tq)


def causal_key_counts(attention_mask: Tensor) -> Tensor:
    """Number of valid (non-pad) keys a causal query at position i can see: Σ_{j ≤ i} mask[j].

    attention_mask: (B, T), 1/True for real tokens, 0/False for padding → (B, T) int64.
    Works for left and right padding; values at pad positions are meaningless and the caller's
    region mask must exclude them.
    """
    if attention_mask.dim() != 2:
        raise SumcircuitError(
            f"attention_mask must have shape (B, T); got {tuple(attention_mask.shape)}."
        )
    return attention_mask.to(torch.int64).cumsum(dim=-1)  # (B, T)


def normalized_entropy(attn: Tensor, n_keys: Tensor) -> Tensor:
    """Entropy divided by its maximum: H / ln(n_keys), defined as 0 where n_keys ≤ 1.

    attn: (B, H, Tq, Tk); n_keys: (Tq,) or (B, Tq), the number of keys query i may attend to
    (i + 1 without padding, else :func:`causal_key_counts`) → (B, H, Tq) in [0, 1].
    """
    h = entropy(attn)  # (B, H, Tq)
    B, _, Tq = h.shape
    if n_keys.shape not in ((Tq,), (B, Tq)):
        raise SumcircuitError(
            f"n_keys must have shape ({Tq},) or ({B}, {Tq}) to match attn; "
            f"got {tuple(n_keys.shape)}."
        )
    n = n_keys.to(device=h.device, dtype=h.dtype)
    n = n.expand(B, Tq)[:, None, :]  # (B, 1, Tq)
    log_n = torch.log(n.clamp_min(2.0))
    return torch.where(n > 1, h / log_n, torch.zeros_like(h))


def _check_pair(p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    _check_4d(p, "p")
    if p.shape != q.shape:
        raise SumcircuitError(
            f"p and q must have the same shape (B, H, Tq, Tk); got {tuple(p.shape)} and "
            f"{tuple(q.shape)}."
        )
    p, q = _compute_dtype(p), _compute_dtype(q)
    dtype = torch.promote_types(p.dtype, q.dtype)
    return p.to(dtype), q.to(dtype)


def kl(p: Tensor, q: Tensor, eps: float = 1e-12) -> Tensor:
    """Kullback–Leibler divergence per attention row: KL(p‖q) = Σ_k p_k (ln p_k − ln q_k).

    p, q: (B, H, Tq, Tk) → (B, H, Tq), nats. Terms with p_k = 0 are 0 (xlogy). Where
    p_k > 0 but q_k = 0 the true KL is +inf; q_k is replaced by ``eps`` there (only exact zeros
    are replaced, so KL(p‖p) = 0 exactly), giving a large finite value ≈ p_k ln(p_k / eps)
    that should be read as a lower bound.
    """
    p, q = _check_pair(p, q)
    q_safe = torch.where(q > 0, q, torch.full_like(q, eps))
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q_safe)).sum(dim=-1)


def js(p: Tensor, q: Tensor) -> Tensor:
    """Jensen–Shannon divergence per row: ½ KL(p‖m) + ½ KL(q‖m), m = ½(p + q).

    p, q: (B, H, Tq, Tk) → (B, H, Tq), nats, symmetric, clamped to [0, ln 2] against rounding.
    m > 0 wherever p or q is, so no epsilon is involved.
    """
    p, q = _check_pair(p, q)
    m = 0.5 * (p + q)
    xm = torch.special.xlogy
    out = 0.5 * (xm(p, p) - xm(p, m) + xm(q, q) - xm(q, m)).sum(dim=-1)
    return out.clamp(0.0, LN2)


def region_mean(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-document sums and counts of a per-query metric over a region, for streaming means.

    values: (B, H, Tq); mask: (B, Tq) bool, True at query positions in the region (padding and
    special tokens already False) → (sum (B, H), count (B,) int64), where
    sum[b, h] = Σ_{i: mask[b, i]} values[b, h, i] and count[b] = Σ_i mask[b, i].
    The region mean of document b is sum[b] / count[b]. Masked-out positions are excluded with
    ``torch.where``, so NaN/inf there never leak into the sum.
    """
    if values.dim() != 3 or mask.shape != (values.shape[0], values.shape[2]):
        raise SumcircuitError(
            f"values must be (B, H, Tq) and mask (B, Tq); got {tuple(values.shape)} and "
            f"{tuple(mask.shape)}."
        )
    m = mask.to(device=values.device, dtype=torch.bool)
    total = torch.where(m[:, None, :], values, 0.0).sum(dim=-1)
    return total, m.sum(dim=-1)  # (B, H), (B,)
