"""The stage runner skips finished stages with the same inputs and re-runs changed ones."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import pytest

from sumcircuit.configs import DictConfig
from sumcircuit.evaluation.evaluate import EvaluateConfig
from sumcircuit.study.config import build_config
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


@dataclass
class _Before(DictConfig):
    limit: int | None = None
    n_boot: int = 2000


@dataclass
class _After(DictConfig):  # the same config after a release changed the n_boot default
    limit: int | None = None
    n_boot: int = 1000


def test_a_changed_default_changes_the_stage_hash_and_reruns_downstream(tmp_path: Path) -> None:
    calls: list[str] = []

    def run_all(config: DictConfig) -> StageRunner:
        runner = StageRunner(tmp_path, ["a", "b"])
        runner.run("a", config, lambda folder: calls.append("a"))
        runner.run("b", {"y": 1}, lambda folder: calls.append("b"), after=("a",))
        return runner

    run_all(_Before(limit=5))
    run_all(_Before(limit=5))
    assert calls == ["a", "b"]  # same resolved config: skipped
    run_all(_After(limit=5))  # the user's options are the same, the default is not
    assert calls == ["a", "b", "a", "b"]


def test_study_stages_hash_their_resolved_config() -> None:
    config = build_config()
    runner = StageRunner(Path("unused"), [])
    resolved = config.evaluate.to_dict()
    assert set(resolved) == {f.name for f in fields(EvaluateConfig)}  # defaults filled in
    assert runner.stage_hash(config.evaluate) == runner.stage_hash(resolved)
    changed = replace(config.evaluate, max_new_tokens=config.evaluate.max_new_tokens + 1)
    assert runner.stage_hash(changed) != runner.stage_hash(config.evaluate)
