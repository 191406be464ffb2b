"""Locate the circuit: rank layers or heads of a diff by a score and keep those a rule selects.

Scores (higher = more changed), per level:

=========  ==================================  =====================================
score      layer (``layers.csv``)              head (``heads.csv``)
=========  ==================================  =====================================
kl         ``kl_mean``                         ``kl_base_ft``
js         ``js_mean``                         ``js``
entropy    ``|delta_entropy_mean|``            ``|delta_entropy|``
weight     ``weight_change``                   ``weight_change``
actmag     ``|actmag_rel_change|``             (not per head)
causal     ``scan.csv`` rows with head = −1,   ``scan.csv`` rows with head ≥ 0,
           ``sufficiency``                     ``sufficiency``
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sumcircuit.analysis.circuit import Circuit
from sumcircuit.configs import DictConfig
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.io import read_json
from sumcircuit.provenance import provenance

log = logging.getLogger(__name__)

__all__ = [
    "LEVELS",
    "RULES",
    "SCORES",
    "LocateConfig",
    "component_scores",
    "locate",
    "read_scan",
    "select",
]

LEVELS = ("layer", "head")
SCORES = ("kl", "js", "entropy", "weight", "actmag", "causal")
RULES = ("topk", "zscore", "fdr")
SCAN_COLUMNS = ["layer", "head", "sufficiency", "sufficiency_lo", "sufficiency_hi"]

# score -> (layers.csv column, heads.csv column, take the absolute value)
_COLUMNS: dict[str, tuple[str, str | None, bool]] = {
    "kl": ("kl_mean", "kl_base_ft", False),
    "js": ("js_mean", "js", False),
    "entropy": ("delta_entropy_mean", "delta_entropy", True),
    "weight": ("weight_change", "weight_change", False),
    "actmag": ("actmag_rel_change", None, True),
}


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
        default=None, metadata={"help": "scan directory (scan.csv) for --score causal"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # types and choices of every field
        if self.k < 1:
            raise ConfigError("k", f"{{key}} must be at least 1, got {self.k}")
        if not 0.0 < self.q < 1.0:
            raise ConfigError("q", f"{{key}} must lie strictly between 0 and 1, got {self.q}")
        if self.score == "causal" and not self.scan:
            raise SumcircuitError("--score causal needs --scan DIR (the output of sumcircuit scan)")
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


def _read_csv(directory: str | Path, name: str) -> pd.DataFrame:
    path = Path(directory) / name
    if not path.exists():
        raise SumcircuitError(
            f"{str(path)!r} does not exist; run sumcircuit diff --out {directory}"
        )
    return pd.read_csv(path)


def read_scan(directory: str | Path) -> pd.DataFrame:
    """``DIR/scan.csv`` of ``sumcircuit scan``: layer, head (−1 = whole layer), sufficiency and
    its CI bounds."""
    path = Path(directory) / "scan.csv"
    if not path.exists():
        raise SumcircuitError(
            f"{str(path)!r} does not exist; run sumcircuit scan --out {directory}"
        )
    frame = pd.read_csv(path)
    missing = [c for c in SCAN_COLUMNS if c not in frame.columns]
    if missing:
        raise SumcircuitError(f"{str(path)!r} lacks columns {missing}; expected {SCAN_COLUMNS}")
    return frame


def component_scores(directory: str | Path, level: str, score: str) -> pd.Series:
    """Scores of every component of one diff (or scan) directory, indexed by layer (level layer)
    or (layer, head) (level head); see the module docstring for the table."""
    if score == "causal":
        scan = read_scan(directory)
        rows = scan[scan["head"] == -1] if level == "layer" else scan[scan["head"] >= 0]
        if rows.empty:
            raise SumcircuitError(
                f"{directory}/scan.csv has no {level}-level rows; run the scan at that level"
            )
        keys = ["layer"] if level == "layer" else ["layer", "head"]
        return rows.set_index(keys)["sufficiency"].astype(float).sort_index()
    layer_col, head_col, absolute = _COLUMNS[score]
    if level == "layer":
        frame, keys, column = _read_csv(directory, "layers.csv"), ["layer"], layer_col
    else:
        frame, keys, column = _read_csv(directory, "heads.csv"), ["layer", "head"], head_col
    values = frame.set_index(keys)[column].astype(float)
    return (values.abs() if absolute else values).sort_index()


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


def _fdr(directory: str, q: float, level: str) -> list:
    heads = _read_csv(directory, "heads.csv")
    significant = heads[heads["q_value"] < q]
    if level == "head":
        return list(zip(significant["layer"], significant["head"], strict=True))
    return sorted(set(significant["layer"]))


def locate(config: LocateConfig) -> Circuit:
    """Apply ``config`` to a diff directory and return the circuit (see the module docstring)."""
    summary = (
        read_json(Path(config.diff) / "diff.json")
        if (Path(config.diff) / "diff.json").exists()
        else None
    )
    if summary is None:
        raise SumcircuitError(
            f"{config.diff!r} has no diff.json; run sumcircuit diff --out {config.diff}"
        )
    source = config.scan if config.score == "causal" else config.diff
    scores = component_scores(source, config.level, config.score)
    if config.control_diff:
        control = component_scores(config.control_diff, config.level, config.score)
        if not control.index.equals(scores.index):
            raise SumcircuitError(
                f"the control diff {config.control_diff!r} covers other components than "
                f"{config.diff!r}; both must come from models of the same architecture"
            )
        scores = scores - control
    if config.rule == "fdr":
        chosen = _fdr(config.diff, config.q, config.level)
    else:
        chosen = select(scores, config.rule, k=config.k, z=config.z)
    if not chosen:
        raise SumcircuitError(
            f"rule {config.rule} selected no {config.level} (scores are flat or nothing is "
            "significant); lower --z, raise --q, or use --rule topk"
        )
    ranking = scores.sort_values(ascending=False, kind="stable")
    ranked = [
        {"layer": int(key[0]), "head": int(key[1]), "score": float(v)}
        if config.level == "head"
        else {"layer": int(key), "score": float(v)}
        for key, v in ranking.items()
    ]
    models = summary.get("provenance", {}).get("models", {})
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


def _norm(key: Any) -> Any:
    return tuple(int(x) for x in key) if isinstance(key, tuple) else int(key)


def _key(row: dict[str, Any], level: str) -> Any:
    return (row["layer"], row["head"]) if level == "head" else row["layer"]
