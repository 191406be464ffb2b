"""The output directory of a training run: start, resume, skip or refuse.

:func:`prepare_out` compares the config hash saved in ``--out`` (``training.json`` or the
checkpoint) with this run's: the same finished run is not retrained, the same unfinished run
needs ``--resume``, and a different run is refused unless ``--overwrite`` (which clears the
directory, on the main process, between barriers). A non-empty directory that holds no run is
always refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.trained import TrainingResult
from sumcircuit.training.checkpoint import checkpoint_info
from sumcircuit.training.config import FinetuneConfig

if TYPE_CHECKING:
    from sumcircuit.distributed import Processes


def prepare_out(config: FinetuneConfig, procs: Processes) -> tuple[Path, bool]:
    """Check the output directory; returns ``(dir, done)``, ``done`` when this exact run
    already finished there. Refuses a directory that holds a different run."""
    if not config.out:
        raise SumcircuitError("--out is required: the directory to write the run to")
    out = Path(config.out)
    digest = config.content_hash()
    result_path, info = TrainingResult.path(out), checkpoint_info(out)
    holds_run = result_path.exists() or info is not None
    if holds_run:
        saved_hash = (
            TrainingResult.load(out).config_hash if result_path.exists() else info["config_hash"]
        )
        if saved_hash != digest and not config.overwrite:
            raise SumcircuitError(
                f"{out} holds a different run (config {saved_hash} vs {digest}); choose another "
                "--out or pass --overwrite to replace it"
            )
        # The same run is kept unless --overwrite alone asks to start again: --resume with
        # --overwrite (what the study passes) resumes it and replaces only a different run.
        if saved_hash == digest and (config.resume or not config.overwrite):
            if result_path.exists() and TrainingResult.load(out).complete:
                return out, True
            if not config.resume:
                raise SumcircuitError(
                    f"{out} holds an unfinished run of this config (step {info['step']}); pass "
                    "--resume to continue it or --overwrite to start again"
                )
            return out, False
        procs.barrier()
        if procs.main:
            shutil.rmtree(out)
        procs.barrier()
    elif out.exists() and any(out.iterdir()):
        raise SumcircuitError(
            f"{out} is not empty and holds no sumcircuit run; choose an empty or new --out"
        )
    return out, False
