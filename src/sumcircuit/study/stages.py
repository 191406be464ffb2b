"""Resumable stages of a run directory.

Each stage writes into ``RUN/<stage>/`` and, when it finishes, a marker ``stage.json`` with the
content hash of everything it depends on (its own resolved config and its upstream stages'
hashes). A stage whose marker carries the same hash is skipped; a changed option re-runs that
stage and everything downstream. A stage config is hashed resolved — every field, defaults
filled in — so a changed default re-runs the stages it affects, like a changed option. A killed stage has no marker and runs again — stages that can resume
from their own checkpoints (training) do so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sumcircuit.configs import DictConfig
from sumcircuit.io import config_hash, read_json, write_json

log = logging.getLogger(__name__)

MARKER = "stage.json"
#: What a stage depends on: its config (hashed as ``to_dict()``, defaults filled in) or a dict.
Options = DictConfig | dict[str, Any]


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
        marker = self.run_dir / name / MARKER
        return marker.exists() and read_json(marker).get("hash") == self.stage_hash(options, after)

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
        self.hashes[name] = digest
        marker = self.run_dir / name / MARKER
        index = self.planned.index(name) + 1 if name in self.planned else 0
        label = f"[{index}/{len(self.planned)}] {name}"
        if marker.exists() and read_json(marker).get("hash") == digest:
            log.info("%s: done before with the same inputs — skipped", label)
            self.skipped.append(name)
            return
        marker.unlink(missing_ok=True)
        log.info(
            "%s: running (elapsed %s%s)",
            label,
            _clock(time.monotonic() - self.started),
            self._eta(name),
        )
        t0 = time.monotonic()
        fn(self.folder(name))
        wall = time.monotonic() - t0
        self.timings[name] = wall
        write_json(marker, {"hash": digest, "wall_s": wall, "finished": time.time()})
        log.info("%s: finished in %s", label, _clock(wall))

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
