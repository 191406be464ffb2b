"""The figure of a run comparison, drawn from the saved :class:`RunComparison` only.

``compare_profiles``: one panel per locator that at least two runs have (the position baselines
left out: their scores are an order, not a measurement); in each, one line per run of its layer scores against relative depth (l + 0.5) / L, each divided by the run's largest
|score| so that models on different scales share an axis (the raw scores are in
``comparison.json``); the run's top-k layers are the filled markers. Written as PNG and SVG.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sumcircuit.report.layer_agreement import relative_depth  # noqa: E402
from sumcircuit.report.plots import save_figure  # noqa: E402
from sumcircuit.report.run_comparison import RunComparison  # noqa: E402

__all__ = ["FIGURE", "plot_profiles"]

FIGURE = "compare_profiles"
#: a line style per run, so that runs that agree exactly still show every line
_STYLES = ("-", "--", ":", "-.")


def plot_profiles(result: RunComparison, out: str | Path) -> list[Path]:
    """Draw the layer profiles of every locator shared by >= 2 runs into ``out``; returns the
    files written (none when the runs share no locator)."""
    having: dict[str, list[dict]] = {}
    for run in result.runs:
        for name, locator in run["locators"].items():
            if locator["candidate"]:
                having.setdefault(name, []).append(run)
    shared = [name for name, runs in having.items() if len(runs) >= 2]
    if not shared:
        return []
    cols = min(3, len(shared))
    rows = math.ceil(len(shared) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), shared, strict=False):
        for run in having[name]:
            locator = run["locators"][name]
            scores = np.asarray(locator["scores"], dtype=np.float64)
            span = float(np.nanmax(np.abs(scores))) if scores.size else 0.0
            y = scores / span if span > 0 else scores
            x = relative_depth(len(scores))
            i = result.labels().index(run["label"])
            color = f"C{i % 10}"
            style = _STYLES[i % len(_STYLES)]
            ax.plot(x, y, style, lw=1.2, color=color, label=f"{run['label']}: {run['name']}")
            top = locator["top_k"]
            ax.plot(x[top], y[top], "o", ms=5, color=color)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("relative depth (l + 0.5) / L", fontsize=8)
        ax.set_ylabel("score / max |score|", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(shared) :]:
        ax.set_visible(False)
    fig.suptitle(f"Layer profiles per locator (dots: each run's top-{result.k} layers)")
    fig.tight_layout()
    return save_figure(fig, Path(out), FIGURE)
