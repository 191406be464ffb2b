"""``RUN/summary.json`` as a result: :class:`StudySummary`, what the study found, read by the report.

The study's summary stage (``sumcircuit.study.summary``) computes it and saves it through this
class; the HTML report loads it through :meth:`StudySummary.load` and reads its fields and query
methods. It lives in ``report/`` (the package that reads it), below ``study/``, so that the
report never imports the study; it imports neither matplotlib nor torch.

Every field has a default so that a summary written before a section existed (faithfulness,
comparisons, ...) still loads and reports; the study always writes every field.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd

from sumcircuit.errors import SumcircuitError
from sumcircuit.layout import RunLayout
from sumcircuit.results import StageResult

__all__ = ["LORA_COLUMNS", "StudySummary"]

#: the LoRA table's columns, one row per model (base, full fine-tune, each arm)
LORA_COLUMNS = (
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeL_ci95",
    "rougeLsum",
    "loop_rate",
    "loop_rate_ci95",
    "loglik",
    "loglik_ci95",
    "trainable_params",
    "epochs",
    "steps_to_target",
    "target_metric",
    "steps_to_target_loss",
    "total_steps",
    "wall_s",
    "tokens_per_s",
    "layers",
    "heads",
    "external",
)

_JSON_NAMES = {
    dict: "a JSON object",
    list: "a list",
    str: "a string",
    int: "a whole number",
    float: "a number",
    type(None): "null",
}


@dataclass
class StudySummary(StageResult):
    """Every stage's headline numbers, the LoRA table, the paper's claims and the figures.

    ``lora``: model -> its row (:data:`LORA_COLUMNS`); ``comparisons``: ``vs_standard`` and
    ``vs_base`` -> model -> metric -> paired bootstrap difference (None: not measured);
    ``figures``: report section -> ``(path relative to the run, caption)`` pairs.
    """

    FILE: ClassVar[str] = RunLayout.SUMMARY_FILE
    STAGE: ClassVar[str] = "run"

    model: str | None = None
    finetuned: dict[str, Any] | None = None  # an external fine-tune's identity; None: the study's
    dataset: str | None = None
    preset: str | None = None
    n_docs_analysed: int | None = None
    entropy: dict[str, Any] = field(default_factory=dict)
    layers_ranked: list[int] = field(default_factory=list)  # most changed (attention KL) first
    circuit: dict[str, Any] = field(default_factory=dict)
    causal: dict[str, Any] = field(default_factory=dict)
    faithfulness: dict[str, Any] = field(default_factory=dict)
    attribution_vs_exact: list[dict[str, Any]] | None = None  # None: no exact scan ran
    lora: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)
    targeted_vs_random: dict[str, Any] | None = None  # None: no random-layer draws
    placement: dict[str, Any] | None = None  # the placement curve; None: not run
    paper_claims: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Each field's JSON type checked (a list where an object belongs is a damaged file)."""
        if isinstance(data, dict):
            _check_types(cls, data)
            if "figures" in data:
                data = data | {"figures": _figure_pairs(data["figures"])}
        return super().from_dict(data)

    @classmethod
    def fix(cls, directory: str | Path) -> str:
        return (
            f"re-run the study into it (sumcircuit run --out {directory}): finished stages are "
            "skipped and the summary is written again"
        )

    # -- queries -----------------------------------------------------------------------------
    def claims(self) -> list[dict[str, Any]]:
        """The paper's claims, each with ``holds``, ``verdicts`` (per outcome, maybe empty) and
        ``evidence`` (empty in a summary written before evidence existed)."""
        return [
            {"holds": None, "evidence": ""} | claim | {"verdicts": claim.get("verdicts") or {}}
            for claim in self.paper_claims
        ]

    def lora_rows(self) -> dict[str, dict[str, Any]]:
        """Each model's LoRA-table row with every :data:`LORA_COLUMNS` key (None where absent)."""
        return {model: dict.fromkeys(LORA_COLUMNS) | row for model, row in self.lora.items()}

    def to_frame(self) -> pd.DataFrame:
        """The LoRA table: one row per model (index ``model``), :data:`LORA_COLUMNS` first."""
        rows = self.lora_rows()
        extra = sorted({k for row in rows.values() for k in row} - set(LORA_COLUMNS))
        frame = pd.DataFrame(
            [{"model": model, **row} for model, row in rows.items()],
            columns=["model", *LORA_COLUMNS, *extra],
        )
        return frame.set_index("model")

    def differences(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(model, reference, {metric: paired difference or None})`` for every comparison
        (reference ``standard`` or ``base``), in the summary's order."""
        return [
            (model, key.removeprefix("vs_"), diffs)
            for key, against in self.comparisons.items()
            for model, diffs in against.items()
        ]

    def figures_of(self, section: str) -> list[tuple[str, str]]:
        """The ``(path relative to the run, caption)`` figures of one report section."""
        return list(self.figures.get(section, []))


def _json_types(hint: Any) -> tuple[type, ...]:
    """The JSON types a field's annotation allows: ``dict[str, Any] | None`` -> (dict, None)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return tuple(typing.get_origin(m) or m for m in (typing.get_args(hint) if union else [hint]))


def _check_types(cls: type, data: dict[str, Any]) -> None:
    for name, hint in typing.get_type_hints(cls).items():
        if name not in data or typing.get_origin(hint) is ClassVar:
            continue
        allowed = _json_types(hint)
        value = data[name]
        if float in allowed and isinstance(value, int):
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            want = " or ".join(_JSON_NAMES[t] for t in allowed)
            raise SumcircuitError(
                f"the {cls.__name__}'s {name} must be {want}, not {type(value).__name__}"
            )


def _figure_pairs(figures: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    out = {}
    for section, pairs in figures.items():
        ok = isinstance(pairs, list) and all(
            isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(s, str) for s in p)
            for p in pairs
        )
        if not ok:
            raise SumcircuitError(
                f"the figures of {section!r} must be a list of [path, caption] pairs"
            )
        out[section] = [(path, caption) for path, caption in pairs]
    return out
