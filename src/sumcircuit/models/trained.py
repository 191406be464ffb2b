"""A trained model on disk: its record (:class:`TrainingResult`, ``training.json``) and loading it
(a full fine-tune directory, or a base model with a LoRA adapter).

The record holds the sha256 of the weights files written with it (``weights_sha256``): a run
folder whose weights were replaced afterwards — even by weights of the same shape, with the study's
file manifest re-hashed — is refused when loaded (:func:`check_trained_weights`), not analysed as
the fine-tune it claims to be. An adapter is applied only if its file holds exactly the tensors
its ``adapter_config.json`` configures.

Here, not in ``training/``, so that evaluation, the study summary and anything else that reads
a trained model never import the training code; ``training`` writes these records.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from peft import PeftModel

from sumcircuit.errors import SumcircuitError, reject_unknown_keys
from sumcircuit.io import sha256_file
from sumcircuit.models.integrity import check_adapter_tensors
from sumcircuit.models.loader import LoadedModel, load_model
from sumcircuit.results import StageResult, reading

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_IDENTITY_KEYS = ("sha256", "model_type", "layers", "heads", "hidden")


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float  # mean summary-token CE over the epoch's tokens
    val_loss: float | None  # summary-token CE over val_limit validation docs
    wall_s: float
    tokens_per_s: float  # real (non-pad) input tokens trained on per second, all processes
    val_rougeL: float | None = None


@dataclass
class CurvePoint:
    """One point of a learning curve: the model measured after ``step`` optimizer steps."""

    step: int  # optimizer steps done (0: before the first)
    epoch: float  # epochs trained, fractional: step / steps per epoch
    examples_seen: int  # training examples consumed so far, all processes
    val_loss: float | None  # summary-token CE over val_limit validation docs
    val_rougeL: float | None = None  # ROUGE-L F1 on rouge_every_epoch docs (None: off / step 0)


@dataclass
class TrainingResult(StageResult):
    """What ``finetune`` wrote to ``out/training.json``."""

    FILE: ClassVar[str] = "training.json"
    STAGE: ClassVar[str] = "finetune"

    trainable_params: int  # entries that can change (masked LoRA entries excluded)
    total_params: int  # base model parameters + trainable adapter entries
    epochs: list[EpochRecord]
    wall_s: float
    config: dict[str, Any]
    config_hash: str
    provenance: dict[str, Any]
    adapted_modules: list[str] = field(default_factory=list)
    rank: int | None = None  # effective LoRA rank (raised by --equal-budget)
    budget: dict[str, Any] = field(default_factory=dict)  # equal-budget counts, when used
    step_losses: list[float] = field(default_factory=list)  # per optimizer step, global mean
    complete: bool = True  # False when stopped by max_steps (a checkpoint is kept)
    precision_used: str = ""  # what ran: bf16 or fp32 (config.precision may say "auto")
    # wall_s: training time of every process that trained this run, each up to the last
    # checkpoint it left (time lost after a kill is not counted); process_wall_s: the last
    # process's share, which resumed at step resumed_at_step (0: not resumed).
    process_wall_s: float | None = None
    resumed_at_step: int = 0
    val_loss_start: float | None = None  # validation loss before the first step
    # the shared cache file val_loss_start was read from (None: this run measured it)
    val_loss_start_from: str | None = None
    # validation at eval_points evenly spaced steps, plus step 0 (empty in older records)
    curve: list[CurvePoint] = field(default_factory=list)
    # sha256 of each weights file written with this record ({} in older records: not checked)
    weights_sha256: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingResult:
        data = dict(data)
        for epoch in data["epochs"]:
            reject_unknown_keys(epoch, EpochRecord, "an epoch record of the TrainingResult")
        data["epochs"] = [EpochRecord(**e) for e in data["epochs"]]
        for point in data.get("curve", []):
            reject_unknown_keys(point, CurvePoint, "a curve point of the TrainingResult")
        data["curve"] = [CurvePoint(**p) for p in data.get("curve", [])]
        return super().from_dict(data)

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch (the ``EpochRecord`` fields)."""
        return pd.DataFrame(
            [asdict(e) for e in self.epochs], columns=[f.name for f in fields(EpochRecord)]
        )

    def history(self) -> list[dict[str, Any]]:
        """The epochs as plain dicts, oldest first."""
        return [asdict(e) for e in self.epochs]


def _seed_means(curves: list[list[dict[str, Any]]], key: str) -> list[tuple[int, float]]:
    """``(step, mean of key over curves)`` at the steps where every curve has a value."""
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for point in curve:
            if point.get(key) is not None:
                by_step.setdefault(point["step"], []).append(point[key])
    return [
        (step, sum(values) / len(values))
        for step, values in sorted(by_step.items())
        if len(values) == len(curves)
    ]


def steps_to_target(
    curves: list[list[dict[str, Any]]],
    target: float,
    key: str = "val_rougeL",
    higher_is_better: bool = True,
) -> int | None:
    """First step at which the seed-mean of ``key`` reaches ``target`` (None if never).

    ``curves``: one list of :class:`CurvePoint` dicts per seed. Only steps every seed measured
    count; "reaches" is ``>=`` (``<=`` when lower is better, e.g. ``val_loss``).
    """
    for step, mean in _seed_means(curves, key):
        if (mean >= target) if higher_is_better else (mean <= target):
            return step
    return None


def final_value(curves: list[list[dict[str, Any]]], key: str = "val_rougeL") -> float | None:
    """Mean over the curves (seeds) of each one's last measured ``key`` (None if none has one)."""
    finals = []
    for curve in curves:
        values = [p[key] for p in curve if p.get(key) is not None]
        if values:
            finals.append(values[-1])
    return sum(finals) / len(finals) if finals else None


def record_weights(result: TrainingResult, folder: Path) -> None:
    """Record in ``result`` the sha256 of the weights files just written to ``folder``."""
    result.weights_sha256 = {
        name: sha256_file(folder / name)
        for name in ("model.safetensors", ADAPTER_WEIGHTS)
        if (folder / name).is_file()
    }


def check_trained_weights(folder: Path, known: dict[str, str | None] | None = None) -> None:
    """Raise one sentence unless the weights in ``folder`` are the ones its ``training.json``
    recorded when they were written (nothing recorded, or no record: nothing to check).
    ``known``: sha256s the caller already computed, by file name."""
    if not TrainingResult.path(folder).is_file():
        return
    record = TrainingResult.load(folder)
    for name, expected in sorted(record.weights_sha256.items()):
        path = folder / name
        if not path.is_file():
            raise SumcircuitError(
                f"{str(path)!r} does not exist, though {str(TrainingResult.path(folder))!r} "
                f"records it; {TrainingResult.fix(folder)}"
            )
        actual = (known or {}).get(name) or sha256_file(path)
        if actual != expected:
            raise SumcircuitError(
                f"the weights {str(path)!r} do not match the sha256 recorded in "
                f"{TrainingResult.FILE} when they were trained ({actual[:16]} vs "
                f"{expected[:16]}): they were replaced or damaged afterwards; "
                f"{TrainingResult.fix(folder)}"
            )


def load_trained(
    model_name_or_dir: str, adapter_dir: str | Path | None = None, **load_kwargs: object
) -> LoadedModel:
    """``load_model`` plus an optional LoRA adapter applied (a ``PeftModel`` in ``.model``).

    ``model_name_or_dir`` may itself be a LoRA run directory: its base model is then read from
    its ``training.json``. The adapter's recorded base-model identity must match the loaded
    base model (same weights checksum and shape), else a clear error is raised.
    """
    if adapter_dir is None and (Path(model_name_or_dir) / ADAPTER_CONFIG).exists():
        adapter_dir = model_name_or_dir
        model_name_or_dir = _recorded_base(Path(adapter_dir))["name"]
    loaded = load_model(model_name_or_dir, **load_kwargs)  # type: ignore[arg-type]
    if adapter_dir is None:
        return loaded
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_CONFIG).exists():
        raise SumcircuitError(
            f"{str(adapter_dir)!r} holds no LoRA adapter ({ADAPTER_CONFIG}); give the --out "
            "directory of a `sumcircuit finetune --method lora` run"
        )
    base = _recorded_base(adapter_dir)
    mismatch = [
        k
        for k in _IDENTITY_KEYS
        if base.get(k) is not None and base.get(k) != loaded.identity.get(k)
    ]
    if mismatch:
        raise SumcircuitError(
            f"the adapter in {str(adapter_dir)!r} was trained on base model {base.get('name')!r}, "
            f"not on {model_name_or_dir!r} (different {', '.join(mismatch)}); load it with its "
            "own base model"
        )
    fix = TrainingResult.fix(adapter_dir)
    with reading(adapter_dir / ADAPTER_WEIGHTS, fix), warnings.catch_warnings():
        # peft's warnings of missing or reshaped tensors: check_adapter_tensors says it in a sentence
        warnings.filterwarnings("ignore", message="Found missing adapter keys")
        warnings.filterwarnings("ignore", message="Some weights of PeftModel were not initialized")
        model = PeftModel.from_pretrained(
            loaded.model, str(adapter_dir), ignore_mismatched_sizes=True
        )
    check_trained_weights(adapter_dir)
    check_adapter_tensors(model, adapter_dir / ADAPTER_WEIGHTS, fix)
    model.eval()
    loaded.identity = dict(loaded.identity, adapter=str(adapter_dir))
    return LoadedModel(
        model=model, tokenizer=loaded.tokenizer, arch=loaded.arch, identity=loaded.identity
    )


def _recorded_base(adapter_dir: Path) -> dict:
    if not TrainingResult.path(adapter_dir).exists():
        raise SumcircuitError(
            f"{str(adapter_dir)!r} has no {TrainingResult.FILE}, so its base model is unknown; "
            "give the base model explicitly and the adapter directory of a sumcircuit finetune run"
        )
    base = TrainingResult.load(adapter_dir).provenance.get("models", {}).get("base")
    if base is None:
        raise SumcircuitError(
            f"{str(TrainingResult.path(adapter_dir))!r} records no base model; "
            f"{TrainingResult.fix(adapter_dir)}"
        )
    return base
