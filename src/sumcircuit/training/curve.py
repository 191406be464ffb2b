"""Learning curves: the model validated at evenly spaced optimizer steps of a run.

``eval_points`` N puts the points after steps ceil(k·T/N), k = 1..N, T the run's total steps
(the last point is the final step; fewer points when T < N), plus step 0: the validation loss
before the first step (``val_loss_start``; no ROUGE-L there, the untrained model's score is the
study's ``base`` evaluation). A point on an epoch end reuses that epoch's validation instead of
measuring twice. Points live in the training progress, which every checkpoint saves, so a
resumed run keeps the points it measured and measures the rest.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from sumcircuit.models.trained import CurvePoint


def curve_steps(total_steps: int, n: int) -> set[int]:
    """Optimizer step counts after which a point is measured (empty when ``n`` is 0)."""
    return {math.ceil(k * total_steps / n) for k in range(1, n + 1)} if n and total_steps else set()


def curve_point(
    step: int,
    steps_per_epoch: int,
    examples_seen: int,
    val_loss: float | None,
    val_rouge: float | None,
) -> dict[str, Any]:
    """One point as the plain dict the progress (and its checkpoint) holds."""
    return asdict(
        CurvePoint(
            step=step,
            epoch=step / steps_per_epoch,
            examples_seen=examples_seen,
            val_loss=val_loss,
            val_rougeL=val_rouge,
        )
    )
