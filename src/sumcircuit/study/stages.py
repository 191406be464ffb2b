"""Resumable stages of a run directory.

Each stage writes into ``RUN/<stage>/`` and, when it finishes, a marker ``stage.json`` with the
content hash of everything it depends on (its own resolved config and its upstream stages'
hashes). A stage whose marker carries the same hash is skipped; a changed option re-runs that
stage and everything downstream. A stage config is hashed resolved — every field, defaults
filled in — so a changed default re-runs the stages it affects, like a changed option. A killed
stage has no marker and runs again — stages that can resume from their own checkpoints
(training) do so.

A stage's outputs are verified before they are trusted: the marker also records the relative
path, size and sha256 of every file the stage folder holds when it finishes (see
:func:`sumcircuit.manifest.file_manifest`), and a finished stage is skipped only while they all still match. A file
that is missing, truncated or changed makes the runner log one line saying which and why, clear
the stage folder and run the stage again. The hash a downstream stage depends on covers its
upstream stages' recorded files too, so a stage whose outputs changed when it was redone re-runs
everything after it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from sumcircuit.configs import DictConfig
from sumcircuit.io import config_hash, read_json, write_json
from sumcircuit.manifest import (  # noqa: F401 - MARKER and file_digest are this module's API too
    MARKER,
    file_digest,
    file_manifest,
    manifest_problem,
)

log = logging.getLogger(__name__)

#: What a stage depends on: its config (hashed as ``to_dict()``, defaults filled in) or a dict.
Options = DictConfig | dict[str, Any]


@dataclass
class Stage:
    """One stage of a plan: ``run(config, folder)``, its config's ``paths`` fields made absolute.

    ``paths`` names the config fields whose values name other stages (a run-relative folder, or
    a list or dict of them): those stages are its inputs. ``options`` may be a function that
    builds the config once its ``after`` stages finished (what it reads to build it)."""

    name: str
    options: Options | Callable[[], Options]
    run: Callable[[Any, Path], None]
    paths: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    weight: float = 1.0  # relative expected cost, for the time estimate

    def inputs(self, known: set[str], options: Options | None = None) -> tuple[str, ...]:
        """The stages this one reads: ``after`` and every planned stage its ``paths`` name."""
        options = options if options is not None else self.options
        named = [] if callable(options) else _refs(options, self.paths, known)
        return tuple(dict.fromkeys([*self.after, *named]))


def _refs(options: Options, paths: tuple[str, ...], known: set[str]) -> list[str]:
    found: list[str] = []
    for name in paths:
        value = getattr(options, name)
        values = (
            value.values()
            if isinstance(value, dict)
            else (value if isinstance(value, (list, tuple)) else [value])
        )
        found += [v for v in values if isinstance(v, str) and v in known]
    return found


def _absolute(options: Options, paths: tuple[str, ...], known: set[str], root: Path) -> Options:
    """``options`` with every stage its ``paths`` fields name replaced by that stage's folder."""

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return str(root / value) if isinstance(value, str) and value in known else value

    if not paths:
        return options
    return replace(options, **{name: resolve(getattr(options, name)) for name in paths})


def order(stages: list[Stage]) -> list[Stage]:
    """The stages with every one after its inputs, otherwise in the order given."""
    known = {s.name for s in stages}
    missing = {(s.name, i) for s in stages for i in s.inputs(known) if i not in known}
    if missing:
        raise ValueError(f"stages read stages that are not planned: {sorted(missing)}")
    done: list[Stage] = []
    left = list(stages)
    while left:
        ready = next(
            (s for s in left if all(i in {d.name for d in done} for i in s.inputs(known))), None
        )
        if ready is None:
            raise ValueError(f"the stages {[s.name for s in left]} read each other in a cycle")
        done.append(ready)
        left.remove(ready)
    return done


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


@dataclass
class StageRunner:
    """Runs named stages in order, skipping finished ones, and reports progress and timing."""

    run_dir: Path
    planned: list[str]
    weights: dict[str, float] = field(default_factory=dict)  # relative expected cost per stage
    started: float = field(default_factory=time.monotonic)
    hashes: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def folder(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def is_done(self, name: str, options: Options, after: tuple[str, ...] = ()) -> bool:
        """Whether stage ``name`` finished with these inputs and its files are unchanged."""
        marker = self._marker(name)
        return (
            marker is not None
            and marker.get("hash") == self.stage_hash(options, after)
            and self._problem(name, marker) is None
        )

    def _marker(self, name: str) -> dict[str, Any] | None:
        """The stage's marker, or None when it has none (or one that is not a JSON object)."""
        path = self.run_dir / name / MARKER
        if not path.is_file():
            return None
        try:
            marker = read_json(path)
        except (OSError, ValueError):  # a damaged marker: the stage is not known to be done
            return None
        return marker if isinstance(marker, dict) else None

    def _problem(self, name: str, marker: dict[str, Any]) -> str | None:
        files = marker.get("files")
        if not isinstance(files, dict):
            return "its marker records no file hashes (written by an older sumcircuit)"
        return manifest_problem(self.run_dir / name, files)

    def _done_hash(self, digest: str, files: dict[str, Any]) -> str:
        """What downstream stages depend on: the inputs' hash and the files the stage wrote."""
        return config_hash({"inputs": digest, "files": files})

    def stage_hash(self, options: Options, after: tuple[str, ...] = ()) -> str:
        """The hash a stage with ``options`` after stages ``after`` (already run) records."""
        resolved = options.to_dict() if isinstance(options, DictConfig) else options
        return config_hash({"options": resolved, "after": {n: self.hashes[n] for n in after}})

    def run(
        self,
        name: str,
        options: Options,
        fn: Callable[[Path], Any],
        *,
        after: tuple[str, ...] = (),
    ) -> None:
        """Run ``fn(folder)`` unless stage ``name`` finished before with the same inputs."""
        digest = self.stage_hash(options, after)
        marker_path = self.run_dir / name / MARKER
        index = self.planned.index(name) + 1 if name in self.planned else 0
        label = f"[{index}/{len(self.planned)}] {name}"
        marker = self._marker(name)
        if marker is not None and marker.get("hash") == digest:
            problem = self._problem(name, marker)
            if problem is None:
                log.info("%s: done before with the same inputs — skipped", label)
                self.hashes[name] = self._done_hash(digest, marker["files"])
                self.skipped.append(name)
                return
            log.warning("stage %s: %s; running it again", name, problem)
            shutil.rmtree(self.run_dir / name)  # its outputs cannot be trusted: start it afresh
        marker_path.unlink(missing_ok=True)
        log.info(
            "%s: running (elapsed %s%s)",
            label,
            _clock(time.monotonic() - self.started),
            self._eta(name),
        )
        t0 = time.monotonic()
        folder = self.folder(name)
        fn(folder)
        wall = time.monotonic() - t0
        self.timings[name] = wall
        files = file_manifest(folder)
        self.hashes[name] = self._done_hash(digest, files)
        write_json(
            marker_path, {"hash": digest, "files": files, "wall_s": wall, "finished": time.time()}
        )
        log.info("%s: finished in %s", label, _clock(wall))

    @classmethod
    def for_plan(cls, run_dir: Path, stages: list[Stage]) -> StageRunner:
        ordered = order(stages)
        return cls(run_dir, [s.name for s in ordered], {s.name: s.weight for s in ordered})

    def run_plan(self, stages: list[Stage]) -> None:
        """Run every stage after its inputs (see :class:`Stage`), each with the absolute paths
        of what it reads, skipping those that finished before with the same inputs."""
        known = {s.name for s in stages}
        for stage in order(stages):
            options = stage.options() if callable(stage.options) else stage.options
            resolved = _absolute(options, stage.paths, known, self.run_dir)
            self.run(
                stage.name,
                options,
                partial(stage.run, resolved),
                after=stage.inputs(known, options),
            )

    def _eta(self, name: str) -> str:
        """Remaining-time estimate from the stages timed so far and their expected weights."""
        done = [n for n in self.timings if n in self.weights]
        if not done or not self.weights:
            return ""
        per_weight = sum(self.timings[n] for n in done) / sum(self.weights[n] for n in done)
        remaining = self.planned[self.planned.index(name) :] if name in self.planned else []
        left = per_weight * sum(
            self.weights.get(n, 0.0) for n in remaining if n not in self.skipped
        )
        return f", about {_clock(left)} left"
