"""Pure functions on hidden states and weights: token cosine, ActMag, linear CKA, weight change.

Shapes: B batch, T tokens, D hidden size. Masks are (B, T) bool, True at tokens that count
(padding and special tokens already False). Per-document functions return (sum, count) so
the caller can stream means over batches.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sumcircuit.errors import SumcircuitError

__all__ = ["LinearCKA", "linear_cka", "norm_sum", "relative_weight_change", "token_cosine"]


def _float(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_hidden(h: Tensor, mask: Tensor, name: str) -> None:
    if h.dim() != 3 or mask.shape != h.shape[:2]:
        raise SumcircuitError(
            f"{name} must be (B, T, D) with mask (B, T); got {tuple(h.shape)} and "
            f"{tuple(mask.shape)}."
        )


def token_cosine(h_a: Tensor, h_b: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-document sum of cos(h_a[b, t], h_b[b, t]) over masked tokens, and the token count.

    h_a, h_b: (B, T, D); mask: (B, T) → (sum (B,), count (B,) int64). Cosine as in
    ``torch.nn.functional.cosine_similarity(eps=1e-8)``; half precision computed in float32.
    """
    _check_hidden(h_a, mask, "h_a")
    if h_b.shape != h_a.shape:
        raise SumcircuitError(
            f"h_a and h_b must have the same shape; got {tuple(h_a.shape)} and {tuple(h_b.shape)}."
        )
    m = mask.to(device=h_a.device, dtype=torch.bool)
    cos = torch.nn.functional.cosine_similarity(_float(h_a), _float(h_b), dim=-1)  # (B, T)
    return torch.where(m, cos, 0.0).sum(dim=-1), m.sum(dim=-1)


def norm_sum(h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-document sum of ‖h[b, t]‖₂ over masked tokens, and the token count.

    h: (B, T, D); mask: (B, T) → (sum (B,), count (B,) int64).
    ActMag = Σ_b sum[b] / Σ_b count[b] (mean over tokens) or per document sum[b] / count[b].
    """
    _check_hidden(h, mask, "h")
    m = mask.to(device=h.device, dtype=torch.bool)
    norms = torch.linalg.vector_norm(_float(h), dim=-1)  # (B, T)
    return torch.where(m, norms, 0.0).sum(dim=-1), m.sum(dim=-1)


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA between two representations of the same N tokens (direct reference).

    x: (N, Dx), y: (N, Dy). With column-centred Xc, Yc (float64):
    CKA = ‖Ycᵀ Xc‖_F² / (‖Xcᵀ Xc‖_F · ‖Ycᵀ Yc‖_F). NaN if either side has zero variance.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise SumcircuitError(
            f"x and y must be (N, Dx) and (N, Dy) over the same N tokens; got "
            f"{tuple(x.shape)} and {tuple(y.shape)}."
        )
    xc = x.double() - x.double().mean(dim=0)
    yc = y.double() - y.double().mean(dim=0)
    return _cka_from_moments(xc.T @ xc, yc.T @ yc, xc.T @ yc)


def _cka_from_moments(cxx: Tensor, cyy: Tensor, cxy: Tensor) -> float:
    den = torch.linalg.matrix_norm(cxx) * torch.linalg.matrix_norm(cyy)
    if den.item() == 0.0:
        return math.nan
    return float(torch.linalg.matrix_norm(cxy) ** 2 / den)


class LinearCKA:
    """Streaming linear CKA over tokens; memory O(D²), independent of the number of tokens.

    Holds n, the column means of X and Y and the centred co-moment matrices
    Cxx = Xcᵀ Xc (Dx, Dx), Cyy = Ycᵀ Yc (Dy, Dy), Cxy = Xcᵀ Yc (Dx, Dy) in float64.
    Each batch is centred on its own mean (products in ``compute_dtype``) and merged with the
    pairwise formula of Chan et al.: C = C_a + C_b + (n_a n_b / n) δx δyᵀ, δ = mean_b − mean_a,
    which avoids the cancellation of accumulating raw XᵀX. :meth:`merge` combines two
    accumulators the same way (e.g. across ranks). :meth:`value` gives
    ‖Cxy‖_F² / (‖Cxx‖_F ‖Cyy‖_F), equal to :func:`linear_cka` on all tokens at once.
    """

    def __init__(self, compute_dtype: torch.dtype = torch.float64) -> None:
        self.compute_dtype = compute_dtype
        self.n = 0
        self.mean_x: Tensor | None = None  # (Dx,)
        self.mean_y: Tensor | None = None  # (Dy,)
        self.cxx: Tensor | None = None  # (Dx, Dx)
        self.cyy: Tensor | None = None  # (Dy, Dy)
        self.cxy: Tensor | None = None  # (Dx, Dy)

    def update(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> None:
        """Add tokens: x (N, Dx) and y (N, Dy), or (B, T, D) each with an optional (B, T) mask."""
        if mask is not None:
            _check_hidden(x, mask, "x")
            _check_hidden(y, mask, "y")
            m = mask.to(device=x.device, dtype=torch.bool)
            x, y = x[m], y[m]  # (N, D)
        elif x.dim() == 3 and y.dim() == 3:
            x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
            raise SumcircuitError(
                f"x and y must hold the same tokens, (N, Dx) and (N, Dy); got "
                f"{tuple(x.shape)} and {tuple(y.shape)}."
            )
        nb = x.shape[0]
        if nb == 0:
            return
        xb, yb = x.to(self.compute_dtype), y.to(self.compute_dtype)
        mx, my = xb.mean(dim=0), yb.mean(dim=0)
        xc, yc = xb - mx, yb - my
        self._merge(
            nb,
            mx.double(),
            my.double(),
            (xc.T @ xc).double(),
            (yc.T @ yc).double(),
            (xc.T @ yc).double(),
        )

    def merge(self, other: LinearCKA) -> None:
        """Fold another accumulator's tokens into this one."""
        if other.n:
            self._merge(other.n, other.mean_x, other.mean_y, other.cxx, other.cyy, other.cxy)

    def _merge(self, nb: int, mx, my, cxx, cyy, cxy) -> None:
        if self.n == 0:
            self.n, self.mean_x, self.mean_y = nb, mx.clone(), my.clone()
            self.cxx, self.cyy, self.cxy = cxx.clone(), cyy.clone(), cxy.clone()
            return
        if mx.shape != self.mean_x.shape or my.shape != self.mean_y.shape:
            raise SumcircuitError(
                f"LinearCKA got widths ({mx.shape[0]}, {my.shape[0]}) after "
                f"({self.mean_x.shape[0]}, {self.mean_y.shape[0]}); use one accumulator per "
                "layer pair."
            )
        mx, my = mx.to(self.mean_x.device), my.to(self.mean_x.device)
        n = self.n + nb
        dx, dy = mx - self.mean_x, my - self.mean_y
        w = self.n * nb / n
        self.cxx += cxx.to(self.cxx.device) + w * torch.outer(dx, dx)
        self.cyy += cyy.to(self.cyy.device) + w * torch.outer(dy, dy)
        self.cxy += cxy.to(self.cxy.device) + w * torch.outer(dx, dy)
        self.mean_x += dx * (nb / n)
        self.mean_y += dy * (nb / n)
        self.n = n

    def value(self) -> float:
        """Linear CKA of all tokens seen so far; NaN if either side has zero variance."""
        if self.n == 0:
            raise SumcircuitError("LinearCKA has no tokens yet; call update() before value().")
        return _cka_from_moments(self.cxx, self.cyy, self.cxy)


def relative_weight_change(w_base: Tensor, w_ft: Tensor) -> float:
    """‖W_ft − W_base‖_F / ‖W_base‖_F, computed in float64 (any shape, flattened)."""
    if w_base.shape != w_ft.shape:
        raise SumcircuitError(
            f"w_base and w_ft must have the same shape; got {tuple(w_base.shape)} and "
            f"{tuple(w_ft.shape)}."
        )
    base = w_base.detach().double()
    denom = torch.linalg.vector_norm(base)
    if denom.item() == 0.0:
        raise SumcircuitError(
            "w_base is all zeros, so the relative change is undefined; report the absolute "
            "change for this module instead."
        )
    return float(torch.linalg.vector_norm(w_ft.detach().double().to(base.device) - base) / denom)
