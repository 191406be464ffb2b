"""The placement curve's figure, drawn from ``placement.json`` only (never a model).

One panel per view (same rank; matched parameters when trained): each locator's held-out
log-likelihood per reference token against k (its top-k layers adapted), the random k-layer sets
as a band (min to max, their mean dashed), standard LoRA (every layer) and the base model as
horizontal lines. Saved as PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sumcircuit.analysis.placement.result import BASE, PlacementResult  # noqa: E402
from sumcircuit.report.plots import save_figure  # noqa: E402

__all__ = ["plot_placement"]


def plot_placement(directory: str | Path, *, out: str | Path | None = None) -> list[Path]:
    """Draw the curve saved in ``directory`` (or its ``placement.json``) into ``out`` (default:
    beside it) as ``placement.png`` and ``placement.svg``; returns both paths."""
    result = PlacementResult.load(directory)
    frame = result.to_frame()
    views = list(dict.fromkeys(frame["view"])) or ["same-rank"]
    fig, axes = plt.subplots(1, len(views), figsize=(6.0 * len(views), 4.2), squeeze=False)
    base, full = result.reference(BASE), result.reference("all")
    for ax, view in zip(axes[0], views, strict=True):
        band = sorted((b for b in result.random if b["view"] == view), key=lambda b: b["k"])
        ks = [b["k"] for b in band]
        ax.fill_between(
            ks,
            [min(b["loglik"]) for b in band],
            [max(b["loglik"]) for b in band],
            color="0.85",
            label=f"random sets ({len(band[0]['runs']) if band else 0} per k)",
        )
        ax.plot(ks, [b["mean"] for b in band], color="0.5", linestyle="--", linewidth=1)
        for name, rows in frame[frame["view"] == view].groupby("locator", sort=False):
            ax.plot(rows["k"], rows["loglik"], marker="o", linewidth=1.2, label=name)
        ax.axhline(full["loglik"], color="black", linewidth=1, label="standard LoRA (all layers)")
        ax.axhline(base["loglik"], color="tab:red", linewidth=1, linestyle=":", label="base")
        ax.set_xscale("log")
        ax.set_xticks(result.sizes, [str(k) for k in result.sizes])
        ax.set_xlabel("adapted layers k")
        ax.set_ylabel("held-out log-likelihood / reference token")
        rank = f"rank {result.rank}" if view == "same-rank" else "rank × layers / k"
        ax.set_title(f"Where to adapt ({view}: {rank})", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    n = result.documents["outcome"]["n"]
    fig.suptitle(f"{n} outcome documents no locator or training run read", fontsize=8, y=0.02)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    target = Path(out) if out is not None else PlacementResult.path(directory).parent
    return save_figure(fig, target, "placement")
