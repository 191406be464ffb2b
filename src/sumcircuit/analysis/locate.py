"""Locate the circuit: rank layers or heads of a diff by a score and keep those a rule selects.

Scores (higher = more changed), per level, read through :class:`~sumcircuit.analysis.diff.DiffResult`
and :class:`~sumcircuit.analysis.scan.ScanResult` (which name their own files and columns):

=========  ==================================  =====================================
score      layer                               head
=========  ==================================  =====================================
kl         mean KL(P_base ‖ Q_ft) over heads   KL(P_base ‖ Q_ft)
js         mean JS over heads                  JS
entropy    |mean ΔH over heads|                |ΔH|
weight     relative weight change              relative weight change
actmag     |ActMag relative change|            (not per head)
causal     the scan's sufficiency of each      the scan's sufficiency of each head
           layer alone                         alone
attribution  the attribution estimate of the   the estimate of each head's
           same (``sumcircuit attribute``)     sufficiency
faithful   the most faithful locator of a      (same)
           ``sumcircuit faithfulness`` result
           (highest CPR), read as that score
=========  ==================================  =====================================

With ``control_diff`` (a diff between two fine-tunes of different seeds, or a fine-tune on
another task) the control's score of the same component is subtracted: what changes anyway is
treated as noise. Rules:

- ``topk``: the k highest scores (ties broken by the lower layer, then head);
- ``zscore``: score ≥ mean + z·std over all components (population std, ddof = 0); if every
  score is equal (std = 0) nothing stands out and nothing is selected;
- ``fdr``: only for ``entropy``, whose heads carry BH q-values: heads with q < ``q``; at layer
  level, the layers holding at least one such head. Other scores have no p-values, and q-values
  cannot be corrected by a control, so ``fdr`` with another score or a control is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sumcircuit.analysis.attribute import AttributionResult
from sumcircuit.analysis.circuit import Circuit
from sumcircuit.analysis.diff_result import DiffResult
from sumcircuit.analysis.faithfulness_result import FaithfulnessResult
from sumcircuit.analysis.scan import ScanResult
from sumcircuit.configs import DictConfig
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.provenance import provenance

log = logging.getLogger(__name__)

__all__ = [
    "LEVELS",
    "RULES",
    "SCORES",
    "LocateConfig",
    "component_scores",
    "locate",
    "select",
]

LEVELS = ("layer", "head")
SCORES = ("kl", "js", "entropy", "weight", "actmag", "causal", "attribution", "faithful")
RULES = ("topk", "zscore", "fdr")
_ABSOLUTE = ("entropy", "actmag")  # scores ranked by their size, whatever their sign
# scores read from a patching result instead of the diff: exact scan, attribution estimate
_PATCHING = {"causal": ScanResult, "attribution": AttributionResult}


@dataclass
class LocateConfig(DictConfig):
    """Which diff, which score, which rule."""

    diff: str = field(metadata={"help": "diff directory (heads.csv, layers.csv, diff.json)"})
    level: str = field(
        default="layer", metadata={"help": "select layers or heads", "choices": LEVELS}
    )
    score: str = field(default="kl", metadata={"help": "ranking score", "choices": SCORES})
    rule: str = field(default="topk", metadata={"help": "selection rule", "choices": RULES})
    k: int = field(default=3, metadata={"help": "components kept by topk"})
    z: float = field(default=1.0, metadata={"help": "zscore threshold: mean + z*std"})
    q: float = field(default=0.05, metadata={"help": "fdr threshold on the BH q-value"})
    control_diff: str | None = field(
        default=None, metadata={"help": "diff directory whose scores are subtracted as noise"}
    )
    scan: str | None = field(
        default=None, metadata={"help": "scan directory (of sumcircuit scan) for --score causal"}
    )
    attribution: str | None = field(
        default=None,
        metadata={
            "help": "attribution directory (of sumcircuit attribute) for --score attribution"
        },
    )
    faithfulness: str | None = field(
        default=None,
        metadata={
            "help": "faithfulness directory for --score faithful: rank by its most faithful "
            "locator (highest CPR)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # types and choices of every field
        if self.k < 1:
            raise ConfigError("k", f"{{key}} must be at least 1, got {self.k}")
        if not 0.0 < self.q < 1.0:
            raise ConfigError("q", f"{{key}} must lie strictly between 0 and 1, got {self.q}")
        if self.score == "causal" and not self.scan:
            raise SumcircuitError("--score causal needs --scan DIR (the output of sumcircuit scan)")
        if self.score == "faithful" and not self.faithfulness:
            raise SumcircuitError(
                "--score faithful needs --faithfulness DIR (the output of sumcircuit faithfulness)"
            )
        if self.score == "attribution" and not self.attribution:
            raise SumcircuitError(
                "--score attribution needs --attribution DIR (the output of sumcircuit attribute)"
            )
        if self.score == "actmag" and self.level == "head":
            raise SumcircuitError(
                "actmag is a per-layer measure; use --level layer or another --score"
            )
        if self.rule == "fdr" and self.score != "entropy":
            raise SumcircuitError(
                f"--rule fdr needs p-values, which only --score entropy has (not {self.score}); "
                "use topk or zscore"
            )
        if self.rule == "fdr" and self.control_diff:
            raise SumcircuitError("--rule fdr cannot subtract a --control-diff; use topk or zscore")


def component_scores(directory: str | Path, level: str, score: str) -> pd.Series:
    """Scores of every component of one diff (or, for ``causal``, scan) directory, indexed by
    layer (level layer) or (layer, head) (level head); see the module docstring for the table."""
    if score in _PATCHING:
        return _PATCHING[score].load(directory).scores(level)
    return _diff_scores(DiffResult.load(directory), level, score)


def _diff_scores(diff: DiffResult, level: str, score: str) -> pd.Series:
    values = diff.scores(level, score)
    return values.abs() if score in _ABSOLUTE else values


def select(scores: pd.Series, rule: str, *, k: int = 3, z: float = 1.0) -> list:
    """Index labels of ``scores`` kept by ``topk`` or ``zscore`` (in ranking order)."""
    values = scores.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise SumcircuitError("some scores are NaN or infinite; check the diff or scan files")
    order = np.lexsort((np.arange(len(values)), -values))  # score desc, then index order
    if rule == "topk":
        chosen = order[:k]
    elif rule == "zscore":
        std = values.std()
        if std == 0.0:
            chosen = np.array([], dtype=int)
        else:
            threshold = values.mean() + z * std
            chosen = [i for i in order if values[i] >= threshold]
    else:
        raise SumcircuitError(f"rule {rule!r} does not rank scores; choose topk or zscore")
    return [scores.index[i] for i in chosen]


def most_faithful(config: LocateConfig) -> LocateConfig:
    """``config`` with ``--score faithful`` replaced by the most faithful locator's own score and
    source (the faithfulness result records how each locator's ranking is read)."""
    result = FaithfulnessResult.load(config.faithfulness)
    if result.level != config.level:
        raise SumcircuitError(
            f"the faithfulness curves in {config.faithfulness!r} rank {result.level}s, not "
            f"{config.level}s; use --level {result.level}"
        )
    best = result.best()
    source = result.sources[best]
    log.info("most faithful locator: %s (CPR %.3f)", best, result.areas[best]["cpr"])
    key = {"causal": "scan", "attribution": "attribution"}.get(source["score"])
    return replace(config, score=source["score"], **({key: source["directory"]} if key else {}))


def locate(config: LocateConfig) -> Circuit:
    """Apply ``config`` to a diff directory and return the circuit (see the module docstring)."""
    if config.score == "faithful":
        return locate(most_faithful(config))
    diff = DiffResult.load(config.diff)
    if config.score in _PATCHING:
        source = config.scan if config.score == "causal" else config.attribution
        scores = _PATCHING[config.score].load(source).scores(config.level)
    else:
        scores = _diff_scores(diff, config.level, config.score)
    if config.control_diff:
        control = component_scores(config.control_diff, config.level, config.score)
        if not control.index.equals(scores.index):
            raise SumcircuitError(
                f"the control diff {config.control_diff!r} covers other components than "
                f"{config.diff!r}; both must come from models of the same architecture"
            )
        scores = scores - control
    _check_scores(scores, config)
    if config.rule == "fdr":
        heads = diff.significant_heads(config.q)
        chosen = heads if config.level == "head" else sorted({layer for layer, _ in heads})
    else:
        chosen = select(scores, config.rule, k=config.k, z=config.z)
    if not chosen:
        raise SumcircuitError(
            f"rule {config.rule} selected no {config.level} (scores are flat or nothing is "
            "significant); lower --z, raise --q, or use --rule topk"
        )
    if len(chosen) >= len(scores):
        fix = (
            f"choose --k below {len(scores)}"
            if config.rule == "topk"
            else ("raise --z" if config.rule == "zscore" else "lower --q")
        )
        raise SumcircuitError(
            f"rule {config.rule} selected every one of the {len(scores)} {config.level}s, so the "
            f"circuit would be the whole model and nothing could be compared with it; {fix}"
        )
    ranking = scores.sort_values(ascending=False, kind="stable")
    ranked = [
        {"layer": int(key[0]), "head": int(key[1]), "score": float(v)}
        if config.level == "head"
        else {"layer": int(key), "score": float(v)}
        for key, v in ranking.items()
    ]
    models = diff.models
    base = dict(models.get("base", {}))
    if config.level == "head":
        heads = [(int(layer), int(head)) for layer, head in chosen]
        layers = sorted({layer for layer, _ in heads})
    else:
        heads, layers = [], sorted(int(layer) for layer in chosen)
    return Circuit(
        model=base,
        level=config.level,
        rule=config.rule,
        score=config.score,
        layers=layers,
        heads=heads,
        scores={
            "ranking": ranked,
            "selected": [r for r in ranked if _key(r, config.level) in set(map(_norm, chosen))],
            "control_subtracted": bool(config.control_diff),
            "threshold": {"k": config.k, "z": config.z, "q": config.q}[
                {"topk": "k", "zscore": "z", "fdr": "q"}[config.rule]
            ],
        },
        provenance=provenance(
            config, models={"base": base, "finetuned": models.get("finetuned", {})}
        ),
    )


def _check_scores(scores: pd.Series, config: LocateConfig) -> None:
    """Refuse scores that cannot rank anything: all zero (nothing changed), or, for topk, all
    equal (the pick would be the tie-break order alone)."""
    values = scores.to_numpy(dtype=np.float64)
    source = config.scan if config.score == "causal" else config.diff
    if len(values) and np.all(values == 0.0):
        raise SumcircuitError(
            f"every {config.score} score in {source!r} is 0: the fine-tuned model does not differ "
            "from the base by this score (was the diff run on a model against itself?); diff a "
            "real fine-tune or choose another --score"
        )
    if config.rule == "topk" and len(values) > 1 and np.all(values == values[0]):
        raise SumcircuitError(
            f"every {config.score} score in {source!r} equals {values[0]:.3g}, so topk would pick "
            f"{config.level}s by index alone; choose another --score"
        )


def _norm(key: Any) -> Any:
    return tuple(int(x) for x in key) if isinstance(key, tuple) else int(key)


def _key(row: dict[str, Any], level: str) -> Any:
    return (row["layer"], row["head"]) if level == "head" else row["layer"]
