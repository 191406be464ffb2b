"""Figures of a diff, drawn from its saved result only (read through ``DiffResult.load``).

- ``heatmap_delta_entropy``: layer × head, mean ΔH = H_ft − H_base (nats), diverging colours
  centred on 0, heads with q < 0.05 dotted;
- ``heatmap_kl``: layer × head, mean KL(P_base ‖ Q_ft) (nats);
- ``layer_profiles``: per layer, mean KL over heads, ActMag relative change, cosine and CKA of
  the residual streams, and weight change; shaded 95% bootstrap CIs where the diff has them
  (CKA and weight change have none).

Each figure is written as PNG and SVG. Layers and heads are numbered from 0.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from sumcircuit.analysis.diff.result import DiffResult  # noqa: E402
from sumcircuit.io import atomic_path  # noqa: E402

__all__ = ["plot_diff"]

FORMATS = ("png", "svg")


def save_figure(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    """Write ``out/name.png`` and ``out/name.svg`` atomically, close ``fig``; the PNG first."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=130, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _heatmap(diff: DiffResult, measure: str, title: str, label: str, diverging: bool):
    grid = diff.head_grid(measure)  # (L, H)
    L, H = grid.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * H, 1.0 + 0.22 * L))
    if diverging:
        span = float(np.nanmax(np.abs(grid))) or 1.0
        image = ax.imshow(grid, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -span, span))
        sig = diff.head_grid("q") < 0.05
        ys, xs = np.nonzero(sig)
        ax.scatter(xs, ys, s=6, c="black", marker=".")
        title += "\n(dots: q < 0.05, BH over all heads)"
    else:
        image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(H))
    ax.set_yticks(range(0, L, max(1, L // 15)))
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=label)
    return fig


def _profile(ax, x, y, ci, title: str, ylabel: str) -> None:
    ax.plot(x, y, marker="o", ms=3, lw=1.2)
    if ci is not None:
        band = np.asarray(ci, dtype=float)
        ax.fill_between(x, band[:, 0], band[:, 1], alpha=0.25, lw=0)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_xlabel("layer", fontsize=8)
    ax.grid(alpha=0.3)


def plot_diff(diff_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Draw every figure of the diff in ``diff_dir`` into ``out`` (default ``diff_dir/plots``);
    returns the files written."""
    diff_dir = Path(diff_dir)
    diff = DiffResult.load(diff_dir)
    summary = diff.summary
    out = Path(out) if out else diff_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    region = summary.get("region", "?")
    n = summary.get("n_docs", "?")
    written: list[Path] = []
    written += save_figure(
        _heatmap(
            diff,
            "entropy",
            f"ΔH = H_ft − H_base per head ({region} region, {n} docs)",
            "ΔH (nats)",
            diverging=True,
        ),
        out,
        "heatmap_delta_entropy",
    )
    written += save_figure(
        _heatmap(
            diff,
            "kl",
            f"KL(P_base ‖ Q_ft) per head ({region} region, {n} docs)",
            "KL (nats)",
            diverging=False,
        ),
        out,
        "heatmap_kl",
    )
    x = np.arange(diff.n_layers)

    def layer(measure: str) -> np.ndarray:
        return diff.scores("layer", measure).to_numpy()

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    _profile(axes[0, 0], x, layer("kl"), diff.layer_ci("kl"), "mean KL over heads", "nats")
    _profile(
        axes[0, 1],
        x,
        layer("actmag"),
        diff.layer_ci("actmag"),
        "ActMag relative change (ft − base) / base",
        "relative change",
    )
    _profile(
        axes[1, 0], x, layer("cosine"), diff.layer_ci("cosine"), "residual stream: cosine, CKA", ""
    )
    axes[1, 0].plot(x, layer("cka"), marker="s", ms=3, lw=1.2, label="linear CKA")
    axes[1, 0].lines[0].set_label("mean cosine")
    axes[1, 0].legend(fontsize=7)
    _profile(axes[1, 1], x, layer("weight"), None, "weight change ‖ΔW‖/‖W‖", "relative")
    fig.suptitle(f"Per-layer change after fine-tuning ({region} region, {n} docs; 95% CIs)")
    fig.tight_layout()
    written += save_figure(fig, out, "layer_profiles")
    return written
