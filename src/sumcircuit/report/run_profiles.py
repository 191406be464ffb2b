"""What one run directory says about where the change is: every locator's layer ranking (with
each document's part of it, where the stage kept one), the study's verdicts and its circuit.

A run is read through its result classes only (:class:`~sumcircuit.layout.RunLayout` for the
folders, each locator's registered loader for its ranking, :class:`StudySummary` for the
verdicts, :class:`Circuit` for the circuit). A locator whose stage folder is absent is not in the
run; one whose folder cannot be read is listed with the reason, never dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sumcircuit.analysis.diff.result import PER_DOC_MEASURES, DiffResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.locate.registry import SOURCE_LOADERS, Locator, Ranking, Shape, locator
from sumcircuit.analysis.locate.registry import names as locator_names
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import read_json
from sumcircuit.layout import RunLayout
from sumcircuit.report.layer_agreement import LayerParts
from sumcircuit.report.summary_result import StudySummary

log = logging.getLogger(__name__)

__all__ = ["NOT_STORED", "LocatorProfile", "RunProfile", "read_run"]

NOT_STORED = "n/a: per-document scores not stored"


@dataclass
class LocatorProfile:
    """One locator's layer ranking in one run; ``parts`` its per-document parts, or None with
    ``note`` saying why there are none (the CI is then not available)."""

    name: str
    candidate: bool
    ranking: Ranking
    parts: LayerParts | None
    note: str = ""

    @property
    def scores(self) -> np.ndarray:
        """(L,) the score of each layer, as the locator ranks them (|score| where absolute)."""
        return self.ranking.scores.sort_index().to_numpy(dtype=np.float64)


@dataclass
class RunProfile:
    """One run directory as the comparison reads it."""

    root: Path
    model: str | None
    data: str | None
    n_layers: int
    k: int | None  # the study's locate.k
    claims: list[dict[str, Any]]  # StudySummary.claims(); empty without summary.json
    circuit: dict[str, Any] | None  # level, score, rule, layers (None: no circuit located yet)
    locators: dict[str, LocatorProfile] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)  # locator -> why it could not be read
    notes: list[str] = field(default_factory=list)


def read_run(path: str | Path) -> RunProfile:
    """Read the run directory ``path`` (written by ``sumcircuit run --out``)."""
    layout = RunLayout(Path(path))
    root = layout.root
    if not root.is_dir():
        raise SumcircuitError(f"{str(root)!r} is not a directory; give run directories")
    has_summary = StudySummary.path(root).exists()
    if not layout.study_file.exists() and not has_summary:
        raise SumcircuitError(
            f"{str(root)!r} is not a sumcircuit run directory (it has no {layout.STUDY_FILE}); "
            "give directories written by `sumcircuit run --out DIR`"
        )
    summary = StudySummary.load(root) if has_summary else None
    study = _study(layout) if summary is None else {}
    config = summary.config if summary is not None else study.get("config") or {}
    notes = [] if summary else [f"no {layout.SUMMARY_FILE}: the study has not finished"]
    diff = _diff(layout)
    circuit = _circuit(layout, summary)
    shape = _shape(diff)
    profile = RunProfile(
        root=root,
        model=summary.model if summary is not None else study.get("model"),
        data=summary.dataset if summary is not None else study.get("data"),
        n_layers=shape.n_layers if shape else 0,
        k=(config.get("locate") or {}).get("k"),
        claims=summary.claims() if summary is not None else [],
        circuit=circuit,
        notes=notes,
    )
    for name in locator_names():
        loc = locator(name)
        if "layer" not in loc.levels:
            continue
        directory = None if loc.stage is None else layout / loc.stage
        if directory is not None and not directory.exists():
            continue  # the run has no such stage
        if shape is None:
            profile.unread[name] = "the run has no diff to give the model's depth"
            continue
        try:
            ranking = loc.rank("layer", directory, shape)
            parts, note = _PARTS[loc.source](loc, directory)
        except SumcircuitError as err:
            profile.unread[name] = str(err)
            continue
        if len(ranking.scores) != shape.n_layers:
            profile.unread[name] = (
                f"its ranking has {len(ranking.scores)} layers, the run's model {shape.n_layers}"
            )
            continue
        if parts is not None and not _reproduces(parts, ranking):
            parts, note = None, "n/a: the per-document values do not reproduce the layer scores"
        profile.locators[name] = LocatorProfile(name, loc.candidate, ranking, parts, note)
    for name, reason in profile.unread.items():
        log.warning("%s: the %s ranking is not compared: %s", root, name, reason)
    return profile


def _study(layout: RunLayout) -> dict[str, Any]:
    """``study.json`` (what the run was started with), or one sentence naming it."""
    try:
        data = read_json(layout.study_file)
    except (OSError, ValueError, RecursionError) as err:
        raise SumcircuitError(
            f"{str(layout.study_file)!r} is damaged ({type(err).__name__}); re-run the study "
            f"into it (sumcircuit run --out {layout.root})"
        ) from None
    if not isinstance(data, dict):
        raise SumcircuitError(f"{str(layout.study_file)!r} is not a JSON object naming the study")
    return data


def _diff(layout: RunLayout) -> DiffResult | None:
    folder = layout / layout.DIFF
    return DiffResult.load(folder) if DiffResult.path(folder).exists() else None


def _circuit(layout: RunLayout, summary: StudySummary | None) -> dict[str, Any] | None:
    """The study's circuit (``locate/circuit.json``, else the summary's), as plain fields."""
    folder = layout / layout.locate()
    if Circuit.path(folder).exists():
        circuit = Circuit.load(folder)
        return {
            "level": circuit.level,
            "score": circuit.score,
            "rule": circuit.rule,
            "layers": list(circuit.layers),
        }
    if summary is not None and summary.circuit:
        return {key: summary.circuit.get(key) for key in ("level", "score", "rule", "layers")}
    return None


def _shape(diff: DiffResult | None) -> Shape | None:
    """The model's layers and heads, from the diff (every study runs it first)."""
    if diff is None:
        return None
    return Shape(int(diff.summary["n_layers"]), int(diff.summary["n_heads"]))


def _reproduces(parts: LayerParts, ranking: Ranking) -> bool:
    """Whether the per-document parts give the ranking's scores on the full sample."""
    full = parts.scores(np.ones((1, parts.n_docs)))[0]
    expected = ranking.scores.sort_index().to_numpy(dtype=np.float64)
    return full.shape == expected.shape and bool(
        np.allclose(full, expected, rtol=1e-6, atol=1e-12, equal_nan=True)
    )


# -- per-document parts of each kind of source --------------------------------------------------
Parts = tuple[LayerParts | None, str]


def _diff_parts(loc: Locator, directory: Path | None) -> Parts:
    if loc.name not in PER_DOC_MEASURES:
        return None, f"n/a: {loc.name} reads no documents"
    diff = DiffResult.load(directory)  # type: ignore[arg-type]
    found = diff.layer_parts_per_doc(loc.name)
    if found is None:
        why = "run diff with --per-doc" if diff.per_doc is None else "its diff predates them"
        return None, f"{NOT_STORED} ({why})"
    num, den = found
    return (
        LayerParts(
            docs=tuple(str(d) for d in num.index),
            num=num.to_numpy(dtype=np.float64),
            den=None if den is None else den.to_numpy(dtype=np.float64),
            absolute=loc.ranking == "absolute",
            data=diff.provenance.get("data", {}).get("checksum"),
        ),
        "",
    )


def _attribution_parts(loc: Locator, directory: Path | None) -> Parts:
    """Sufficiency per document and layer over the fine-tune's gain per document: the layer
    score is Σ_d est_d / Σ_d (m_ft,d − m_base,d) (see ``sumcircuit.analysis.causal.attribute``)."""
    result = SOURCE_LOADERS["attribution"](directory)  # type: ignore[arg-type]
    per_doc = result.per_doc
    if per_doc is None:
        return None, NOT_STORED
    # read by column as analysis/causal/agreement.py does: AttributionResult has no query for it
    rows = per_doc[per_doc["component"] == "layer"]
    num = rows.pivot(index="doc", columns="layer", values="sufficiency").sort_index(axis=1)
    gain = rows.groupby("doc")[["m_ft", "m_base"]].first().loc[num.index]
    den = (gain["m_ft"] - gain["m_base"]).to_numpy(dtype=np.float64)
    return (
        LayerParts(
            docs=tuple(str(d) for d in num.index),
            num=num.to_numpy(dtype=np.float64),
            den=np.repeat(den[:, None], num.shape[1], axis=1),
            absolute=loc.ranking == "absolute",
            data=result.provenance.get("data", {}).get("checksum"),
        ),
        "",
    )


def _not_stored(loc: Locator, directory: Path | None) -> Parts:
    return None, NOT_STORED


def _no_documents(loc: Locator, directory: Path | None) -> Parts:
    return None, f"n/a: {loc.name} reads no documents"


def _adapt_parts(loc: Locator, directory: Path | None) -> Parts:
    # the adapt stage's scores sum over batches of train pairs (gradients, the probe) or read
    # the weights alone (spectrum-snr): there is no per-document score to resample
    return None, "n/a: no per-document scores (sums over train batches, or the weights alone)"


#: how each kind of locator source gives its per-document parts
_PARTS: dict[str, Callable[[Locator, Path | None], Parts]] = {
    "diff": _diff_parts,
    "attribution": _attribution_parts,
    "exact": _not_stored,
    "adapt": _adapt_parts,
    "none": _no_documents,
}
