"""Plots of causal results; they read result files only, never models.

:func:`plot_exact` draws the scan saved in ``DIR`` by ``sumcircuit scan``: a bar chart with 95%
CIs per layer for a layer scan, a layers × heads heatmap for a head scan.
:func:`plot_attribution_vs_exact` draws an attribution's layer scores against an exact layer
scan's, one labelled point per layer. Saved as PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sumcircuit.analysis.causal.agreement import attribution_vs_exact  # noqa: E402
from sumcircuit.analysis.causal.attribute import AttributionResult  # noqa: E402
from sumcircuit.analysis.causal.exact import ExactResult  # noqa: E402
from sumcircuit.analysis.causal.faithfulness_result import FaithfulnessResult  # noqa: E402
from sumcircuit.report.plots import save_figure  # noqa: E402


def plot_exact(directory: str | Path, *, stem: str = "exact") -> list[Path]:
    """Draw the scan in ``directory``; returns the written ``stem.png`` and ``stem.svg``."""
    scan = ExactResult.load(directory)
    fig = _heatmap(scan.scores("head")) if scan.level == "head" else _bars(scan)
    return save_figure(fig, Path(directory), stem)


def _bars(scan: ExactResult) -> plt.Figure:
    scores = scan.scores("layer")
    value = scores.to_numpy()
    ci = scan.ci("layer")  # (L, 2)
    err = np.vstack([value - ci[:, 0], ci[:, 1] - value])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.3 * len(scores)), 3.5))
    ax.bar(scores.index.to_numpy(), value, yerr=err, capsize=2, color="tab:blue")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("layer")
    ax.set_ylabel("sufficiency (fraction of Δm recovered)")
    ax.set_title("Patching each layer alone from the fine-tuned model (95% CI)")
    return fig


def plot_attribution_vs_exact(attribution: str | Path, scan: str | Path, out: str | Path) -> Path:
    """Scatter of the attribution's estimate (x) against the exact sufficiency (y) of each
    layer, read from the ``attribute`` and layer ``scan`` directories, each point labelled with
    its layer, Pearson r in the title; ``out`` + .png/.svg, returns the PNG."""
    vs = attribution_vs_exact(AttributionResult.load(attribution), ExactResult.load(scan))
    x, y = np.asarray(vs["attribution"]), np.asarray(vs["exact"])
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.scatter(x, y, s=18, color="tab:blue")
    for layer, a, b in zip(vs["layers"], x, y, strict=True):
        ax.annotate(str(layer), (a, b), xytext=(3, 3), textcoords="offset points", fontsize=7)
    finite = np.isfinite(x) & np.isfinite(y)
    if finite.any():  # the line of perfect agreement
        low = float(min(x[finite].min(), y[finite].min()))
        high = float(max(x[finite].max(), y[finite].max()))
        ax.plot([low, high], [low, high], color="0.6", linewidth=0.8, linestyle="--", label="y = x")
        ax.legend(fontsize=7, loc="upper left")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.axvline(0.0, color="black", linewidth=0.5)
    ax.set_xlabel(f"attribution estimate ({vs['method']}, fraction of Δm)")
    ax.set_ylabel("exact sufficiency (fraction of Δm)")
    ax.set_title(
        f"Attribution vs exact patching per layer: r = {vs['pearson']:.2f}, "
        f"Kendall τ = {vs['kendall']:.2f}\n({vs['n_docs']} selection documents)",
        fontsize=9,
    )
    out = Path(out)
    return save_figure(fig, out.parent, out.name)[0]


def _heatmap(scores: pd.Series) -> plt.Figure:
    grid = scores.unstack().sort_index().sort_index(axis=1)  # (L, H), index (layer, head)
    bound = float(np.nanmax(np.abs(grid.to_numpy()))) or 1.0
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * grid.shape[1] + 2), max(3.0, 0.25 * len(grid))))
    image = ax.imshow(grid.to_numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("Sufficiency of each head alone")
    fig.colorbar(image, ax=ax, label="sufficiency")
    return fig


def plot_faithfulness(directory: str | Path, *, stem: str = "faithfulness") -> list[Path]:
    """Sufficiency and necessity curves of every locator saved in ``directory`` by
    ``sumcircuit faithfulness``, the random sets' mean and 5-95% range in grey at each size that
    has them (a band between sizes); PNG and SVG."""
    result = FaithfulnessResult.load(directory)
    curves, band = result.to_frame(), result.random_frame()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for ax, measure in zip(axes, ("sufficiency", "necessity"), strict=True):
        lo, hi, mean = (f"{measure}_{k}" for k in ("p05", "p95", "mean"))
        drawn = band.dropna(subset=[lo, hi]) if not band.empty else band
        if len(drawn) > 1:  # a band between the sizes that have random sets
            ax.fill_between(drawn["fraction"], drawn[lo], drawn[hi], color="0.88")
        if not drawn.empty:  # and each size's range, visible also when only one size has sets
            ax.errorbar(
                drawn["fraction"],
                drawn[mean],
                yerr=[drawn[mean] - drawn[lo], drawn[hi] - drawn[mean]],
                fmt="s",
                markersize=4,
                color="0.45",
                capsize=4,
                label="random sets (mean, 5-95%)",
            )
        for name, rows in curves.groupby("locator", sort=False):
            area = result.areas[name]
            label = f"{name} (CPR {area['cpr']:.2f}, CMD {area['cmd']:.2f})"
            ax.plot(rows["fraction"], rows[measure], marker="o", markersize=3, label=label)
        ax.axhline(1.0, color="black", linewidth=0.6, linestyle=":")
        ax.set_xlabel(f"fraction of {result.level}s in the circuit")
        ax.set_ylabel(f"{measure} (fraction of Δm)")
    axes[0].legend(fontsize=7)
    scoring = result.documents["scoring"]
    fig.suptitle(
        f"Faithfulness of each locator's top-n {result.level}s, scored on "
        f"{scoring['n_docs']} {scoring['split']} documents disjoint from selection"
    )
    fig.tight_layout()
    return save_figure(fig, Path(directory), stem)
