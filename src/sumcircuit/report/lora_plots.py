"""Learning curves and the ROUGE comparison of the LoRA arms (read result files only)."""

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


def rouge_bars(rows: dict[str, dict[str, Any]], out: Path) -> Path:
    """Test ROUGE-L with 95% CI per arm (``rows``: arm -> {rougeL, rougeL_ci95})."""
    arms = list(rows)
    means = [rows[a]["rougeL"] for a in arms]
    lo = [m - rows[a]["rougeL_ci95"][0] for a, m in zip(arms, means, strict=True)]
    hi = [rows[a]["rougeL_ci95"][1] - m for a, m in zip(arms, means, strict=True)]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(arms)), 3.4))
    ax.bar(arms, means, yerr=[lo, hi], capsize=4, color="#4c72b0")
    ax.set(ylabel="test ROUGE-L (95% CI)", title="ROUGE-L by arm")
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, out)
