"""The stage runner skips finished stages with the same inputs and re-runs changed ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from sumcircuit.study.stages import MARKER, StageRunner


def test_skip_rerun_and_downstream_invalidation(tmp_path: Path) -> None:
    calls: list[str] = []

    def work(name: str):
        return lambda folder: calls.append(name) or (folder / "out.txt").write_text(name)

    def run_all(a_opts: dict, b_opts: dict) -> StageRunner:
        runner = StageRunner(tmp_path, ["a", "b"])
        runner.run("a", a_opts, work("a"))
        runner.run("b", b_opts, work("b"), after=("a",))
        return runner

    run_all({"x": 1}, {"y": 1})
    assert calls == ["a", "b"]
    runner = run_all({"x": 1}, {"y": 1})
    assert calls == ["a", "b"] and runner.skipped == ["a", "b"]
    run_all({"x": 1}, {"y": 2})  # only b changed
    assert calls == ["a", "b", "b"]
    run_all({"x": 2}, {"y": 2})  # a changed: b depends on it and re-runs too
    assert calls == ["a", "b", "b", "a", "b"]


def test_a_failed_stage_leaves_no_marker_and_runs_again(tmp_path: Path) -> None:
    runner = StageRunner(tmp_path, ["a"])

    def boom(folder: Path) -> None:
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        runner.run("a", {}, boom)
    assert not (tmp_path / "a" / MARKER).exists()
    done: list[int] = []
    StageRunner(tmp_path, ["a"]).run("a", {}, lambda folder: done.append(1))
    assert done == [1] and (tmp_path / "a" / MARKER).exists()
