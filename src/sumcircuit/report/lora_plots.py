"""Learning curves and the test scores of the LoRA arms (read result files only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sumcircuit.report.plots import save_figure  # noqa: E402


def _save(fig: plt.Figure, out: Path) -> Path:
    """``out`` + .png/.svg; returns the PNG."""
    return save_figure(fig, out.parent, out.name)[0]


def learning_curves(trainings: dict[str, dict[str, Any]], out: Path) -> Path:
    """Validation loss and (when recorded) validation ROUGE-L, one line per arm.

    ``trainings`` maps an arm name to its ``training.json`` dict. The x axis is the optimizer
    step, from the ``curve`` points; when an arm's record has no curve (written before curves
    existed), every arm is drawn from its ``epochs`` records by epoch instead.
    """
    by_step = all(t.get("curve") for t in trainings.values())
    series = {arm: t["curve"] if by_step else t["epochs"] for arm, t in trainings.items()}
    x_key, x_label = ("step", "optimizer step") if by_step else ("epoch", "epoch")
    has_rouge = any(p.get("val_rougeL") is not None for s in series.values() for p in s)
    fig, axes = plt.subplots(
        1, 2 if has_rouge else 1, figsize=(10 if has_rouge else 5.5, 3.6), squeeze=False
    )
    for arm, points in sorted(series.items()):
        for ax, key in zip(axes[0], ("val_loss", "val_rougeL"), strict=False):
            shown = [p for p in points if p.get(key) is not None]  # no ROUGE-L at step 0
            ax.plot([p[x_key] for p in shown], [p[key] for p in shown], marker="o", label=arm)
    axes[0, 0].set(
        xlabel=x_label, ylabel="validation loss (summary tokens)", title="validation loss"
    )
    axes[0, 0].legend(fontsize=8)
    if has_rouge:
        axes[0, 1].set(xlabel=x_label, ylabel="validation ROUGE-L", title="validation ROUGE-L")
    return _save(fig, out)


def metric_bars(
    rows: dict[str, dict[str, Any]],
    out: Path,
    *,
    key: str = "rougeL",
    label: str = "test ROUGE-L",
    from_zero: bool = True,
) -> Path | None:
    """One test score with its 95% CI per arm (``rows``: arm -> {key, f"{key}_ci95"}).

    Bars from zero (``from_zero``, for ROUGE), or points with whiskers on an axis fitted to the
    values (for a log-likelihood, whose differences are small next to its size). Arms whose
    score is None are left out; returns None (no figure) when every arm's is.
    """
    arms = [a for a in rows if rows[a].get(key) is not None]
    if not arms:
        return None
    means = [rows[a][key] for a in arms]
    lo = [m - rows[a][f"{key}_ci95"][0] for a, m in zip(arms, means, strict=True)]
    hi = [rows[a][f"{key}_ci95"][1] - m for a, m in zip(arms, means, strict=True)]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(arms)), 3.4))
    if from_zero:
        ax.bar(arms, means, yerr=[lo, hi], capsize=4, color="#4c72b0")
    else:
        ax.errorbar(arms, means, yerr=[lo, hi], fmt="o", capsize=4, color="#4c72b0")
        ax.grid(axis="y", alpha=0.3)
    ax.set(ylabel=f"{label} (95% CI)", title=f"{label} by arm")
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, out)
