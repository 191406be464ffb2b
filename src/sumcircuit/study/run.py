"""``sumcircuit run``: the whole study in one resumable command.

    finetune (full) ─► diff ─► attribute/<method> ... ─► [exact] ─► faithfulness ─► locate
        ─► validate ─► LoRA arms ─► evaluate ─► summary + report

The stages, what each reads and how each is run are declared in :mod:`sumcircuit.study.plan`;
:class:`~sumcircuit.study.stages.StageRunner` runs them in order in their folders of the run
directory (:class:`~sumcircuit.layout.RunLayout`). A finished stage with unchanged inputs is
skipped, so a killed run resumes where it stopped (a LoRA arm killed mid-training resumes from
its own checkpoint).

Each attribution method of ``attribute.methods`` (``atp``, ``ig-weights``, ...) is a stage of
its own and a locator of its own in faithfulness. ``exact`` (with ``exact.limit`` > 0) patches
every layer alone on the first selection documents: the exact effects the attribution is
checked against (``summary.json`` ``attribution_vs_exact``) and faithfulness's ``exact`` locator.
``locate`` takes the locator whose circuits were the most faithful on held-out validation
documents (``locate.score: faithful``); an arm that reads another locator's circuit
(``targeted-kl``) plans a ``locate-<locator>`` stage beside it.

With ``finetuned`` set (``--finetuned``), an existing fine-tune is checked against the base
before any stage and the finetune stage only records it (path and weights checksum).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import check_writable_dir, read_json, write_json
from sumcircuit.layout import RunLayout
from sumcircuit.study.config import StudyConfig
from sumcircuit.study.external import check_external
from sumcircuit.study.lock import run_lock
from sumcircuit.study.plan import plan_study
from sumcircuit.study.preflight import check_study
from sumcircuit.study.stages import StageRunner

log = logging.getLogger(__name__)


def check_run_dir(out: Path, config: StudyConfig, overwrite: bool) -> None:
    """Refuse a run directory that holds a different study (other model or data), or files that
    are no study's; with ``overwrite`` clear it first. Then record this study in
    ``RUN/study.json``. Called with the run's lock held (its lock file is no study's content)."""
    layout = RunLayout(out)
    marker = layout.study_file
    ours = {layout.LOCK_FILE}
    if marker.exists():
        previous = _previous_study(marker)
        same = (
            previous is not None
            and previous.get("model") == config.model
            and previous.get("data") == config.data
        )
        if not same and not overwrite:
            if previous is None:
                raise SumcircuitError(
                    f"{str(marker)!r} is damaged (not a JSON object naming the study's model and "
                    "data), so what the directory holds is unknown; choose another --out or pass "
                    "--overwrite"
                )
            raise SumcircuitError(
                f"{str(out)!r} holds another study (model {previous.get('model')!r}, data "
                f"{previous.get('data')!r}); choose another --out or pass --overwrite"
            )
        if not same:
            _clear(out, keep=ours)
    elif out.exists() and any(p.name not in ours for p in out.iterdir()) and not overwrite:
        raise SumcircuitError(
            f"{str(out)!r} is not empty and holds no sumcircuit study; choose another --out "
            "or pass --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"model": config.model, "data": config.data, "config": config.to_dict()})


def _previous_study(marker: Path) -> dict[str, Any] | None:
    """The study a run directory records, or None when its ``study.json`` is unreadable or not
    a JSON object."""
    try:
        previous = read_json(marker)
    except (OSError, ValueError, RecursionError):
        return None
    return previous if isinstance(previous, dict) else None


def _clear(out: Path, keep: set[str]) -> None:
    """Remove everything in ``out`` except the names in ``keep`` (the lock being held)."""
    for path in out.iterdir():
        if path.name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def disk_needed(config: StudyConfig) -> int:
    """Peak bytes the study writes, estimated before any model loads: the full fine-tune (its
    model copy and checkpoint, see :func:`~sumcircuit.training.loop.disk_needed`) and one LoRA
    arm training at a time (finished arms keep only their small adapter); tables are small."""
    from sumcircuit.training.loop import disk_needed as training_needs

    full = 0 if config.finetuned else training_needs(config.finetune)  # external: nothing written
    return full + training_needs(config.lora.arm())


def run_study(config: StudyConfig, out: str | Path, *, overwrite: bool = False) -> Path:
    """Run (or resume) every stage of the study into ``out``; return the report path."""
    from sumcircuit.models.loader import check_available
    from sumcircuit.report.html import build_report
    from sumcircuit.study.summary import write_summary

    layout = RunLayout(Path(out))
    check_available(config.finetune.model)  # an unknown model fails before --out is touched
    check_writable_dir(layout.root, need_bytes=disk_needed(config))
    # Every value the data or the model bounds, and an external fine-tune against the base,
    # checked before anything is written or cleared: a refused start leaves --out as it was.
    check_study(config)
    external = check_external(config.model, config.finetuned) if config.finetuned else None
    plan = plan_study(config, layout, external)
    runner = StageRunner.for_plan(layout.root, plan.stages)
    with run_lock(layout):
        check_run_dir(layout.root, config, overwrite)
        runner.run_plan(plan.stages)
        summary = write_summary(layout, config, arm_names=plan.arm_names, runner=runner)
        log.info("summary: %s", summary)
        return build_report(layout.root)
