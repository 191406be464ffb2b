"""Learning-rate schedule: linear warmup, then linear or cosine decay to zero."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    ``(step+1)/warmup`` during warmup, then ``1 − p`` (linear) or ``(1 + cos πp)/2`` (cosine)
    with ``p = (step − warmup)/(total − warmup)`` the decay progress.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def make_scheduler(
    optimizer: torch.optim.Optimizer, total: int, warmup_fraction: float, kind: str
) -> LambdaLR:
    warmup = round(warmup_fraction * total)
    return LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, kind))
