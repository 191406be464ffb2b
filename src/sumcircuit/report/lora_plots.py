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


def learning_curves(histories: dict[str, list[dict[str, Any]]], out: Path) -> Path:
    """Validation loss and (when recorded) validation ROUGE-L per epoch, one line per arm.

    ``histories`` maps an arm name to its ``training.json`` ``epochs`` list.
    """
    has_rouge = any(e.get("val_rougeL") is not None for h in histories.values() for e in h)
    fig, axes = plt.subplots(
        1, 2 if has_rouge else 1, figsize=(10 if has_rouge else 5.5, 3.6), squeeze=False
    )
    for arm, epochs in sorted(histories.items()):
        xs = [e["epoch"] for e in epochs]
        axes[0, 0].plot(xs, [e.get("val_loss") for e in epochs], marker="o", label=arm)
        if has_rouge:
            axes[0, 1].plot(xs, [e.get("val_rougeL") for e in epochs], marker="o", label=arm)
    axes[0, 0].set(
        xlabel="epoch", ylabel="validation loss (summary tokens)", title="validation loss"
    )
    axes[0, 0].legend(fontsize=8)
    if has_rouge:
        axes[0, 1].set(xlabel="epoch", ylabel="validation ROUGE-L", title="validation ROUGE-L")
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
