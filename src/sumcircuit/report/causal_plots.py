"""Plots of causal results; they read result files only, never models.

:func:`plot_scan` draws ``DIR/scan.csv`` (written by ``sumcircuit scan``): a bar chart with 95%
CIs per layer for a layer scan, a layers × heads heatmap for a head scan. Saved as PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sumcircuit.errors import SumcircuitError  # noqa: E402
from sumcircuit.report.plots import save_figure  # noqa: E402

SCAN_CSV = "scan.csv"


def plot_scan(directory: str | Path, *, stem: str = "scan") -> list[Path]:
    """Draw the scan in ``directory``; returns the written ``stem.png`` and ``stem.svg``."""
    directory = Path(directory)
    path = directory / SCAN_CSV
    if not path.exists():
        raise SumcircuitError(f"{str(path)!r} does not exist; run sumcircuit scan first")
    frame = pd.read_csv(path)
    fig = _heatmap(frame) if (frame["head"] >= 0).any() else _bars(frame)
    return save_figure(fig, directory, stem)


def _bars(frame: pd.DataFrame) -> plt.Figure:
    frame = frame.sort_values("layer")
    value = frame["sufficiency"].to_numpy()
    err = np.vstack([value - frame["sufficiency_lo"], frame["sufficiency_hi"] - value])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.3 * len(frame)), 3.5))
    ax.bar(frame["layer"], value, yerr=err, capsize=2, color="tab:blue")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("layer")
    ax.set_ylabel("sufficiency (fraction of Δm recovered)")
    ax.set_title("Patching each layer alone from the fine-tuned model (95% CI)")
    return fig


def _heatmap(frame: pd.DataFrame) -> plt.Figure:
    grid = frame.pivot(index="layer", columns="head", values="sufficiency").sort_index()
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
