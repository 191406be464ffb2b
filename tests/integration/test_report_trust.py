"""The report inlines only its own figures: a file the summary lists reaches report.html only
when it is a regular file inside the run, reached without symlinks, listed unchanged in the
``stage.json`` of the stage that wrote it, and a PNG. Anything else is "figure refused"."""

from __future__ import annotations

import base64
import logging
import os
from html import escape
from pathlib import Path

import pytest

from sumcircuit.layout import RunLayout
from sumcircuit.manifest import MARKER, vouch, write_manifest
from sumcircuit.report.html import build_report
from sumcircuit.report.summary_result import StudySummary
from sumcircuit.study.stages import StageRunner

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
SECRET = b"api-token: hunter2-do-not-publish\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _run(tmp_path: Path) -> RunLayout:
    """A run whose diff stage (run by the real StageRunner) drew one good figure, plus a
    secret file lying beside the run."""
    layout = RunLayout(tmp_path / "run")

    def diff(folder: Path) -> None:
        (folder / layout.DIFF_PLOTS).mkdir()
        (folder / layout.DIFF_PLOTS / "good.png").write_bytes(PNG)

    StageRunner(layout.root, [layout.DIFF]).run(layout.DIFF, {}, diff)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return layout


def _report(layout: RunLayout, listed: list[str]) -> str:
    """Build the report of a summary listing ``listed`` as the diff's figures."""
    figures = [(rel, f"figure {i}") for i, rel in enumerate(listed)]
    StudySummary(model="tiny", figures={"diff": figures}).save(layout.root)
    return build_report(layout.root).read_text()


def _refused(html: str, rel: str, why: str) -> None:
    shown = escape(f"figure refused: {rel} (it {why}", quote=True)
    assert shown in html, html.split("<h2>Circuit")[0][-600:]


def test_the_stage_s_own_figure_is_inlined(tmp_path: Path) -> None:
    layout = _run(tmp_path)
    html = _report(layout, ["diff/plots/good.png"])
    assert f"data:image/png;base64,{_b64(PNG)}" in html and "figure refused" not in html


def test_a_symlinked_figure_never_reaches_the_report(tmp_path: Path, caplog) -> None:
    layout = _run(tmp_path)
    plots = layout.diff_plots()
    (plots / "zz.png").symlink_to(tmp_path / "secret.txt")
    (plots / "host.png").symlink_to("/etc/hostname")
    good = plots / "good.png"
    (plots / "alias.png").symlink_to(good)  # a link to a vouched PNG is still a link
    listed = ["diff/plots/zz.png", "diff/plots/host.png", "diff/plots/alias.png"]
    with caplog.at_level(logging.WARNING, logger="sumcircuit.report.html"):
        html = _report(layout, listed)
    for rel in listed:
        _refused(html, rel, "is a symlink")
    assert SECRET.decode() not in html and _b64(SECRET) not in html
    assert "data:image" not in html  # not even the link to the good figure
    hostname = Path("/etc/hostname")
    if hostname.is_file() and hostname.read_bytes().strip():
        assert _b64(hostname.read_bytes()) not in html
    lines = [r.getMessage() for r in caplog.records if "figure refused" in r.getMessage()]
    assert (
        len(lines) == 3
        and lines[0] == "report: figure refused: diff/plots/zz.png (it is a symlink)"
    )


def test_a_symlinked_folder_inside_the_run_is_refused(tmp_path: Path) -> None:
    layout = _run(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(PNG + SECRET)
    (layout.root / "diff" / "linked").symlink_to(outside, target_is_directory=True)
    html = _report(layout, ["diff/linked/x.png"])
    _refused(html, "diff/linked/x.png", "lies under the symlink 'diff/linked'")
    assert _b64(PNG + SECRET) not in html


@pytest.mark.parametrize(
    ("rel", "why"),
    [
        ("../secret.txt", "leaves"),
        ("diff/../../secret.txt", "leaves"),
        ("ABSOLUTE", "is an absolute path"),
    ],
)
def test_a_path_outside_the_run_is_refused(tmp_path: Path, rel: str, why: str) -> None:
    layout = _run(tmp_path)
    rel = str(tmp_path / "secret.txt") if rel == "ABSOLUTE" else rel
    html = _report(layout, [rel])
    _refused(html, rel, why)
    assert _b64(SECRET) not in html and "data:image" not in html


def test_an_unlisted_or_changed_file_is_refused(tmp_path: Path) -> None:
    """A PNG planted in a stage folder after it finished, one in a folder no stage wrote, and
    the stage's own figure overwritten (another PNG): none is the stage's figure."""
    layout = _run(tmp_path)
    planted = PNG + b"planted"
    (layout.diff_plots() / "planted.png").write_bytes(planted)
    (layout.root / "loose").mkdir()
    (layout.root / "loose" / "stray.png").write_bytes(planted)
    (layout.root / "top.png").write_bytes(planted)
    html = _report(layout, ["diff/plots/planted.png", "loose/stray.png", "top.png"])
    _refused(html, "diff/plots/planted.png", "is not listed in diff/stage.json")
    _refused(html, "loose/stray.png", "was written by no stage of this run")
    _refused(html, "top.png", "was written by no stage of this run")
    assert _b64(planted) not in html
    (layout.diff_plots() / "good.png").write_bytes(planted)  # same name, other content
    html = _report(layout, ["diff/plots/good.png"])
    _refused(html, "diff/plots/good.png", "changed since the diff stage wrote it")
    assert _b64(planted) not in html


def test_a_vouched_file_that_is_not_a_png_is_refused(tmp_path: Path) -> None:
    """Even a file the stage wrote and listed is inlined only when it is a PNG."""
    layout = _run(tmp_path)

    def plot(folder: Path) -> None:
        (folder / "notes.png").write_bytes(SECRET)

    StageRunner(layout.root, ["validate"]).run("validate", {}, plot)
    assert vouch(layout.root, "validate/notes.png") is None  # vouched for ...
    html = _report(layout, ["validate/notes.png"])
    _refused(html, "validate/notes.png", "is not a PNG file")  # ... and still refused
    assert _b64(SECRET) not in html


def test_a_missing_figure_is_said_missing(tmp_path: Path) -> None:
    layout = _run(tmp_path)
    html = _report(layout, ["diff/plots/gone.png"])
    assert "figure missing: diff/plots/gone.png" in html and "figure refused" not in html


def test_the_summary_vouches_for_exactly_the_figures_it_drew(tmp_path: Path) -> None:
    """RUN/report holds the summary's figures and a stage.json listing them: one it drew is
    inlined, a file lying beside them is not."""
    layout = _run(tmp_path)
    layout.figures.mkdir()
    drawn = layout.figure("rouge_bars.png")
    drawn.write_bytes(PNG + b"bars")
    (layout.figures / "stale.png").write_bytes(PNG + b"stale")
    write_manifest(layout.figures, [drawn], written_by="summary")
    assert (layout.figures / MARKER).is_file()
    html = _report(layout, ["report/rouge_bars.png", "report/stale.png"])
    assert _b64(PNG + b"bars") in html and _b64(PNG + b"stale") not in html
    _refused(html, "report/stale.png", "is not listed in report/stage.json")


def test_a_hard_link_to_a_secret_is_no_vouched_figure(tmp_path: Path) -> None:
    """A hard link is a regular file: the manifest's sha256 still keeps it out."""
    layout = _run(tmp_path)
    try:
        os.link(tmp_path / "secret.txt", layout.diff_plots() / "hard.png")
    except OSError:
        pytest.skip("no hard links here")
    html = _report(layout, ["diff/plots/hard.png"])
    _refused(html, "diff/plots/hard.png", "is not listed in diff/stage.json")
    assert _b64(SECRET) not in html


def test_the_figures_the_summary_draws_are_inlined_and_a_planted_one_is_not(
    tmp_path: Path,
) -> None:
    """draw_study_figures (the summary step) vouches for what it drew in RUN/report; a PNG
    planted there beforehand is listed by nobody and a symlinked diff plot is refused."""
    from sumcircuit.models.trained import CurvePoint, EpochRecord, TrainingResult
    from sumcircuit.report.figures import draw_study_figures

    layout = _run(tmp_path)
    layout.figures.mkdir()
    (layout.figures / "planted.png").write_bytes(PNG + SECRET)
    (layout.diff_plots() / "zz.png").symlink_to(tmp_path / "secret.txt")
    TrainingResult(
        trainable_params=10,
        total_params=100,
        epochs=[EpochRecord(1, 2.0, 1.9, 3.0, 100.0)],
        wall_s=6.0,
        config={"method": "lora"},
        config_hash="abc",
        provenance={},
        curve=[CurvePoint(0, 0.0, 0, 2.1), CurvePoint(2, 1.0, 8, 1.9)],
    ).save(layout / layout.lora("standard", 0))
    row = {"rougeL": 0.2, "rougeL_ci95": [0.1, 0.3], "loglik": None}
    summary = StudySummary(model="tiny", lora={"base": row, "full": row, "standard": row})
    summary.figures = draw_study_figures(layout, summary, arms=["standard"], seed=0, exact="x")
    summary.figures["lora"].append(("report/planted.png", "planted"))
    summary.save(layout.root)
    html = build_report(layout.root).read_text()
    drawn = [rel for rel, _ in summary.figures["lora"][:-1]]
    assert drawn == ["report/rouge_bars.png", "report/lora_curves.png"]
    for rel in drawn:
        assert _b64((layout.root / rel).read_bytes()) in html
    assert html.count("data:image/png;base64,") == 3  # the two drawn and the diff's good.png
    _refused(html, "report/planted.png", "is not listed in report/stage.json")
    _refused(html, "diff/plots/zz.png", "is a symlink")
    assert _b64(PNG + SECRET) not in html and _b64(SECRET) not in html
