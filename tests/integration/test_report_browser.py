"""The HTML report renders, figures included, in a real headless browser (Debian chromium)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sumcircuit.manifest import write_manifest
from sumcircuit.report.html import build_report
from sumcircuit.report.summary_result import StudySummary

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (make test installs it: apt-get install chromium)",
)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]  # fmt: skip


def _red_figure(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.imshow(np.ones((10, 10, 3)) * [1.0, 0.0, 0.0])
    ax.set_title("figure under test")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def test_report_renders_with_its_figures(tmp_path: Path) -> None:
    (tmp_path / "diff").mkdir()
    _red_figure(tmp_path / "diff" / "fig.png")
    write_manifest(tmp_path / "diff", [tmp_path / "diff" / "fig.png"])  # as the stage vouches
    StudySummary(
        model="tiny",
        dataset="pairs <b>not bold</b>",
        figures={"diff": [("diff/fig.png", "red test figure")]},
        lora={"standard": {"rougeL": 0.2, "rougeL_ci95": [0.1, 0.3], "trainable_params": 10}},
    ).save(tmp_path)
    report = build_report(tmp_path)
    profile = tmp_path / "profile"
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run(
        [*common, "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "sumcircuit report" in dom and "&lt;b&gt;not bold&lt;/b&gt;" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,1400", report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]  # (H, W, 3) in [0, 1]
    red = (pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.1) & (pixels[..., 2] < 0.1)
    assert red.sum() > 2000, "the inlined figure did not render"
