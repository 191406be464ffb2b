"""Spectrum's signal-to-noise ratio of a weight matrix (Hartford et al., arXiv 2406.06623), from
the weights alone.

Implemented as the authors' ``spectrum.py`` (github.com/cognitivecomputations/spectrum) computes
it, for a weight W of shape (m, n) with singular values σ_1 ≥ ... ≥ σ_k (k = min(m, n)):

- noise scale s = IQR(σ) / 1.349 (the interquartile range of the singular values, quantiles
  by linear interpolation, over the normal distribution's IQR);
- Marchenko–Pastur bound ε = s · (1 + √β), β = min(m, n) / max(m, n);
- SNR = (Σ_{σ_i > ε} σ_i) / (Σ_{σ_i ≤ ε} σ_i) / σ_1 — the signal-to-noise ratio divided by the
  largest singular value, which is the figure their tool ranks by. When no singular value lies
  at or below ε (e.g. every σ equal, so IQR = 0) the noise sum is taken as 1, as in their
  earlier release, rather than dividing by zero.

Spectrum compares a matrix only with the same matrix in other layers (q_proj with q_proj). A
layer's score (:func:`layer_snr`) keeps that: each kind's SNRs are divided by their mean over
the layers, and a layer's score is the mean of its matrices' normalised SNRs, so every kind of
target counts equally and a single target ranks layers exactly as Spectrum does.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from sumcircuit.analysis.adapt.targets import Target

IQR_OF_NORMAL = 1.349


def mp_bound(sigma: torch.Tensor, shape: tuple[int, int]) -> float:
    """ε = IQR(σ)/1.349 · (1 + √β) for singular values ``sigma`` (k,) of a ``shape`` matrix."""
    q75, q25 = torch.quantile(sigma.double(), torch.tensor([0.75, 0.25], dtype=torch.float64))
    m, n = shape
    beta = min(m, n) / max(m, n)
    return float((q75 - q25) / IQR_OF_NORMAL * (1.0 + beta**0.5))


def spectrum_snr(weight: torch.Tensor) -> float:
    """Spectrum's SNR of a 2-D ``weight`` (see the module docstring), in float64."""
    if weight.ndim != 2:
        raise ValueError(f"spectrum_snr needs a matrix, got shape {tuple(weight.shape)}")
    sigma = torch.linalg.svdvals(weight.detach().double())  # descending
    bound = mp_bound(sigma, tuple(weight.shape))
    signal = float(sigma[sigma > bound].sum())
    noise = float(sigma[sigma <= bound].sum()) or 1.0
    return signal / noise / float(sigma[0])


def layer_snr(values: np.ndarray, matrices: list[Target], n_layers: int) -> np.ndarray:
    """``(n_layers,)``: the mean over each layer's matrices of SNR / (mean SNR of its kind)."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for target, value in zip(matrices, values, strict=True):
        by_kind[target.kind].append(float(value))
    scale = {kind: float(np.mean(v)) for kind, v in by_kind.items()}
    total = np.zeros(n_layers, dtype=np.float64)
    count = np.zeros(n_layers, dtype=np.float64)
    for target, value in zip(matrices, values, strict=True):
        total[target.layer] += float(value) / scale[target.kind] if scale[target.kind] else 0.0
        count[target.layer] += 1
    return total / np.maximum(count, 1)
