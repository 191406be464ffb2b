"""Stopping a diverging run: one sentence with the advice, the last good checkpoint kept.

A run stops when a trainable weight is NaN/inf or its magnitude passes :data:`WEIGHT_LIMIT`
(real models' weights stay well below 100), or when an epoch's validation loss is NaN/inf or
exceeds :data:`VAL_RISE` times the validation loss measured before the first step.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from sumcircuit.errors import SumcircuitError
from sumcircuit.training.checkpoint import checkpoint_info

WEIGHT_LIMIT = 1e4
VAL_RISE = 2.0


def stop_diverged(out: Path, step: int, what: str) -> None:
    """Stop a diverging run with one sentence: what went wrong, at which step, and the advice
    (a lower --lr; resume from the last good checkpoint, which is kept, if there is one)."""
    kept = checkpoint_info(out)
    where = (
        f"the last good checkpoint (step {kept['step']}) is kept in {out}; resume from it with a "
        "lower --lr"
        if kept
        else "no checkpoint had been written yet; rerun with a lower --lr"
    )
    raise SumcircuitError(f"{what} at step {step + 1}; stopped: {where}")


def check_weights(params: list[torch.nn.Parameter], out: Path, step: int) -> None:
    """Stop when a trainable weight is NaN/inf or its magnitude passes ``WEIGHT_LIMIT``."""
    with torch.no_grad():
        biggest = float(torch.stack([p.detach().abs().amax().float() for p in params]).amax())
    if not math.isfinite(biggest) or biggest > WEIGHT_LIMIT:
        stop_diverged(
            out,
            step,
            f"the trained weights exploded (largest |w| {biggest:.3g} > {WEIGHT_LIMIT:g})",
        )


def check_val_loss(
    val_loss: float | None, start: float | None, out: Path, *, step: int, epoch: int
) -> None:
    """Stop when an epoch's validation loss is NaN/inf or over ``VAL_RISE`` times ``start``."""
    if val_loss is None or start is None:
        return
    if not math.isfinite(val_loss) or val_loss > VAL_RISE * start:
        stop_diverged(
            out,
            step - 1,
            f"the validation loss rose to {val_loss:.4g}, over {VAL_RISE:g}x its start "
            f"({start:.4g}), by the end of epoch {epoch}",
        )
