"""The stage runner skips finished stages with the same inputs and re-runs changed ones."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import pytest

from sumcircuit.configs import DictConfig
from sumcircuit.evaluation.evaluate import EvaluateConfig
from sumcircuit.io import read_json, write_json
from sumcircuit.study import stages
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


def _two_stages(root: Path, calls: list[str]) -> StageRunner:
    def work(name: str):
        def write(folder: Path) -> None:
            calls.append(name)
            (folder / "sub").mkdir(exist_ok=True)
            (folder / "sub" / "out.csv").write_text("layer\n0\n1\n2\n")

        return write

    runner = StageRunner(root, ["a", "b"])
    runner.run("a", {"x": 1}, work("a"))
    runner.run("b", {"y": 1}, work("b"), after=("a",))
    return runner


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda p: p.write_text("layer\n0\n"), "sub/out.csv changed since it was written (size"),
        (lambda p: p.write_text("layer\n0\n1\n9\n"), "same size, different sha256"),
        (lambda p: p.unlink(), "sub/out.csv is missing"),
    ],
)
def test_a_stage_whose_files_changed_runs_again_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, why: str
) -> None:
    calls: list[str] = []
    _two_stages(tmp_path, calls)
    marker = read_json(tmp_path / "a" / MARKER)
    assert marker["files"]["sub/out.csv"]["size"] == len("layer\n0\n1\n2\n")
    damage(tmp_path / "a" / "sub" / "out.csv")
    (tmp_path / "a" / "stray.txt").write_text("not the stage's")  # cleared with the redo
    with caplog.at_level("INFO"):
        runner = _two_stages(tmp_path, calls)
    lines = [r.getMessage() for r in caplog.records if "running it again" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("stage a: ") and why in lines[0], lines
    # a's outputs are byte-identical once redone, so b (which depends on them) stays valid
    assert calls == ["a", "b", "a"] and runner.skipped == ["b"]
    assert not (tmp_path / "a" / "stray.txt").exists()
    assert runner.is_done("a", {"x": 1}) and runner.is_done("b", {"y": 1}, after=("a",))


def test_a_redone_stage_with_new_outputs_reruns_downstream(tmp_path: Path) -> None:
    calls: list[str] = []
    runner = StageRunner(tmp_path, ["a", "b"])
    outputs = iter(["first", "second"])

    def a(folder: Path) -> None:
        calls.append("a")
        (folder / "out.txt").write_text(next(outputs))

    for _ in range(2):
        runner = StageRunner(tmp_path, ["a", "b"])
        runner.run("a", {}, a)
        runner.run("b", {}, lambda folder: calls.append("b"), after=("a",))
        (tmp_path / "a" / "out.txt").write_text("edited by hand")
    assert calls == ["a", "b", "a", "b"]


def test_big_files_are_hashed_by_size_and_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sumcircuit import manifest

    monkeypatch.setattr(manifest, "WHOLE_HASH_LIMIT", 10)
    monkeypatch.setattr(manifest, "EDGE", 4)
    path = tmp_path / "weights.bin"
    path.write_bytes(b"headMIDDLEtail")
    digest = stages.file_digest(path)
    assert set(digest) == {"size", "sha256_ends"} and digest["size"] == 14
    path.write_bytes(b"headmiddletail")  # same size and ends: the cheap hash does not see it
    assert stages.manifest_problem(tmp_path, {"weights.bin": digest}) is None
    path.write_bytes(b"headMIDDLEtaiL")
    assert "different sha256" in stages.manifest_problem(tmp_path, {"weights.bin": digest})


def test_a_marker_without_file_hashes_is_not_trusted(tmp_path: Path) -> None:
    calls: list[str] = []
    _two_stages(tmp_path, calls)
    marker = read_json(tmp_path / "a" / MARKER)
    del marker["files"]
    write_json(tmp_path / "a" / MARKER, marker)
    (tmp_path / "b" / MARKER).write_text('{"hash": ')  # damaged marker: not done
    _two_stages(tmp_path, calls)
    assert calls == ["a", "b", "a", "b"]
