"""Locate the circuit: rank layers or heads by a registered locator and keep those a rule selects.

Every locator of :data:`~sumcircuit.analysis.locate.registry.LOCATORS` can rank (``--score NAME``):
the diff's change measures (``kl``, ``js``, ``entropy`` as |ΔH|, ``weight``, ``actmag``), each
attribution method (``atp``, ``atp-trapezoid``, ``ig-weights``, ``ig-direct``; ``--sources
atp=DIR``), the exact patching scan (``exact``; ``--sources exact=DIR``), the position
baselines (``first-k``, ``last-k``, ``evenly-spaced``) and the adaptation locators of a
``sumcircuit adapt`` result (``rgn``, ``fisher``, ``grad-energy``, ``probe-norm``, ``probe-act``,
``spectrum-snr``; ``--sources rgn=DIR``), which rank where to train rather than where the
fine-tune changed. ``faithful`` takes the most faithful candidate locator of a ``sumcircuit
faithfulness`` result (never a baseline or an adaptation locator; highest CPR; when it is not
significantly above the others, the cheapest of those tied with it:
:mod:`sumcircuit.analysis.causal.areas`) and records that choice, with the paired CPR
difference to the runner-up, in the circuit (``scores.locator_choice``).

The circuit records its selection documents (``documents``): those its ranking was computed on
and, for ``faithful``, the faithfulness scoring documents that chose the locator; ``validate``
refuses to score on them.

With ``control_diff`` (a diff between two fine-tunes of different seeds, or a fine-tune on
another task) the control's score of the same component is subtracted: what changes anyway is
treated as noise (the diff's locators only). Rules:

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

from sumcircuit.analysis.causal.areas import choice_sentence
from sumcircuit.analysis.causal.faithfulness_result import FaithfulnessResult
from sumcircuit.analysis.diff.result import DiffResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.locate.registry import (
    LEVELS,
    Locator,
    Ranking,
    Shape,
    check_computed_on,
    locator,
    names,
    plain_key,
    sources_field,
)
from sumcircuit.analysis.locate.selection import record
from sumcircuit.configs import DictConfig
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.provenance import provenance

log = logging.getLogger(__name__)

__all__ = ["FAITHFUL", "LEVELS", "RULES", "LocateConfig", "locate", "select"]

FAITHFUL = "faithful"
RULES = ("topk", "zscore", "fdr")
#: Old spellings of a locator, accepted for one release with a deprecation message.
RENAMED = {"causal": "exact"}


@dataclass
class LocateConfig(DictConfig):
    """Which diff, which locator, which rule."""

    diff: str = field(metadata={"help": "diff directory (heads.csv, layers.csv, diff.json)"})
    level: str = field(
        default="layer", metadata={"help": "select layers or heads", "choices": LEVELS}
    )
    score: str = field(
        default="kl",
        metadata={"help": f"locator that ranks: one of {', '.join(names())} or {FAITHFUL}"},
    )
    rule: str = field(default="topk", metadata={"help": "selection rule", "choices": RULES})
    k: int = field(default=3, metadata={"help": "components kept by topk"})
    z: float = field(default=1.0, metadata={"help": "zscore threshold: mean + z*std"})
    q: float = field(default=0.05, metadata={"help": "fdr threshold on the BH q-value"})
    control_diff: str | None = field(
        default=None, metadata={"help": "diff directory whose scores are subtracted as noise"}
    )
    sources: dict[str, str] = sources_field()
    faithfulness: str | None = field(
        default=None,
        metadata={
            "help": "faithfulness directory for --score faithful: rank by its most faithful "
            "locator (highest CPR; a tie, by paired bootstrap, goes to the cheapest)"
        },
    )
    scan: str | None = field(default=None, metadata={"help": "deprecated: use --sources exact=DIR"})
    attribution: str | None = field(
        default=None, metadata={"help": "deprecated: use --sources METHOD=DIR"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # types and choices of every field
        self._fold_deprecated()
        if self.k < 1:
            raise ConfigError("k", f"{{key}} must be at least 1, got {self.k}")
        if not 0.0 < self.q < 1.0:
            raise ConfigError("q", f"{{key}} must lie strictly between 0 and 1, got {self.q}")
        if self.score == FAITHFUL:
            if not self.faithfulness:
                raise SumcircuitError(
                    "--score faithful needs --faithfulness DIR (the output of sumcircuit "
                    "faithfulness)"
                )
            return
        spec = locator(self.score)
        if self.level not in spec.levels:
            raise SumcircuitError(
                f"{self.score} has no {self.level}-level ranking; use --level "
                f"{' or '.join(spec.levels)} or another --score"
            )
        if spec.source not in ("diff", "none") and self.score not in self.sources:
            raise SumcircuitError(
                f"--score {self.score} reads a {spec.source} result: pass --sources "
                f"{self.score}=DIR (the output of sumcircuit {_COMMANDS[spec.source]})"
            )
        if self.rule not in spec.rules:
            if self.rule == "fdr":
                raise SumcircuitError(
                    f"--rule fdr needs p-values, which only --score entropy has (not "
                    f"{self.score}); use topk or zscore"
                )
            raise SumcircuitError(
                f"--rule {self.rule} does not apply to {self.score}; use {' or '.join(spec.rules)}"
            )
        if self.control_diff and (self.rule == "fdr" or spec.source != "diff"):
            raise SumcircuitError(
                "--control-diff subtracts a diff's scores: it needs one of the diff's locators "
                "and --rule topk or zscore"
            )

    def _fold_deprecated(self) -> None:
        """``--scan``, ``--attribution`` and ``--score causal``/``attribution`` into
        ``--sources`` and the locator's name, each with a one-line deprecation message."""
        if self.score in RENAMED:
            log.warning("--score %s is deprecated; use --score %s", self.score, RENAMED[self.score])
            self.score = RENAMED[self.score]
        if self.scan:
            log.warning("--scan DIR is deprecated; use --sources exact=DIR")
            self.sources = {**self.sources, "exact": self.scan}
            self.scan = None
        if self.attribution:
            from sumcircuit.analysis.locate.sources import attribution_method

            method = attribution_method(self.attribution)
            log.warning("--attribution DIR is deprecated; use --sources %s=DIR", method)
            self.sources = {**self.sources, method: self.attribution}
            if self.score == "attribution":
                self.score = method
            self.attribution = None

    def source_of(self, spec: Locator) -> str | None:
        """The directory ``spec`` reads: the diff, its ``sources`` entry, or none."""
        if spec.source == "diff":
            return self.diff
        return self.sources.get(spec.name)


_COMMANDS = {"diff": "diff", "attribution": "attribute", "exact": "exact", "adapt": "adapt"}


def diff_shape(diff: DiffResult) -> Shape:
    """The layers and heads a diff covers."""
    return Shape(diff.n_layers, len(diff.heads) // max(1, diff.n_layers))


def ranking(config: LocateConfig, diff: DiffResult) -> Ranking:
    """The ranking ``config.score`` gives, minus the control's scores when one is given."""
    spec = locator(config.score)
    found = spec.rank(config.level, config.source_of(spec), diff_shape(diff))
    if spec.source != "diff":  # another stage's result: ranked on the diff's model pair?
        found.check_models(diff.models, f"diff {config.diff!r}")
    if config.control_diff:  # another pair by design (other seed, other task): not checked
        control = spec.rank(config.level, config.control_diff)
        if not control.scores.index.equals(found.scores.index):
            raise SumcircuitError(
                f"the control diff {config.control_diff!r} covers other components than "
                f"{config.diff!r}; both must come from models of the same architecture"
            )
        found = replace(found, scores=found.scores - control.scores)
    return found


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


def most_faithful(config: LocateConfig) -> tuple[LocateConfig, dict[str, Any]]:
    """``config`` with ``--score faithful`` replaced by the most faithful candidate locator and
    the directory it was read from — for a diff locator, the diff the curves were drawn from
    (both recorded in the faithfulness result) — and what the circuit records about the
    choice: ``choice`` (winner, runner-up, paired CPR difference, significance, tie rule) and
    ``documents`` (the faithfulness scoring documents, which chose the locator)."""
    result = FaithfulnessResult.load(config.faithfulness)
    check_computed_on(
        result.provenance.get("models") or {},
        DiffResult.load(config.diff).models,
        f"the faithfulness curves in {config.faithfulness!r}",
        f"diff {config.diff!r}",
    )
    if result.level != config.level:
        raise SumcircuitError(
            f"the faithfulness curves in {config.faithfulness!r} rank {result.level}s, not "
            f"{config.level}s; use --level {result.level}"
        )
    best = result.best()
    directory = result.sources[best]["directory"]
    choice = result.choice or {"winner": best, "rule": "highest CPR (no CIs recorded)"}
    choice = choice | {"sentence": choice_sentence(choice)}
    log.info("%s (CPR %.3f)", choice_sentence(choice), result.areas[best]["cpr"])
    sources, diff = config.sources, config.diff
    if directory is not None and locator(best).source == "diff":
        if Path(directory).resolve() != Path(config.diff).resolve():
            log.warning(
                "the %s curve was drawn from diff %r, not --diff %r: ranking by the diff the "
                "curve measured",
                best,
                directory,
                config.diff,
            )
        diff = directory
    elif directory is not None:
        sources = {**sources, best: directory}
    scoring = result.documents.get("scoring", {})
    documents = []
    if scoring.get("ids") is not None:
        documents.append(
            record(
                "locator choice",
                scoring.get("data") or result.provenance.get("data", {}),
                scoring.get("split"),
                None,
                scoring["ids"],
                source="faithfulness",
            )
        )
    chosen = replace(config, score=best, sources=sources, diff=diff)
    return chosen, {"choice": choice, "documents": documents}


def locate(config: LocateConfig) -> Circuit:
    """Apply ``config`` to a diff directory and return the circuit (see the module docstring)."""
    if config.score == FAITHFUL:
        chosen, how = most_faithful(config)
        circuit = locate(chosen)
        circuit.scores["locator_choice"] = how["choice"]
        circuit.documents += how["documents"]
        return circuit
    diff = DiffResult.load(config.diff)
    found = ranking(config, diff)
    controls = []
    if config.control_diff:  # its documents chose what counts as noise
        control = locator(config.score).rank(config.level, config.control_diff)
        controls.append(control.documents("control"))
    scores = found.scores
    _check_scores(found, config)
    if config.rule == "fdr":
        heads = diff.significant_heads(config.q)
        chosen = heads if config.level == "head" else sorted({layer for layer, _ in heads})
    elif config.rule == "topk":
        chosen = found.top(config.k)
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
    ranked = [
        {"layer": int(key[0]), "head": int(key[1]), "score": float(scores[key])}
        if config.level == "head"
        else {"layer": int(key), "score": float(scores[key])}
        for key in found.order()
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
            "selected": [r for r in ranked if _key(r, config.level) in set(map(plain_key, chosen))],
            "control_subtracted": bool(config.control_diff),
            "threshold": {"k": config.k, "z": config.z, "q": config.q}[
                {"topk": "k", "zscore": "z", "fdr": "q"}[config.rule]
            ],
        },
        provenance=provenance(
            config, models={"base": base, "finetuned": models.get("finetuned", {})}
        ),
        documents=[d for d in (found.documents(), *controls) if d is not None],
    )


def _check_scores(found: Ranking, config: LocateConfig) -> None:
    """Refuse scores that cannot rank anything: all zero (nothing changed), or, for topk, all
    equal (the pick would be the tie-break order alone). Position baselines rank by position."""
    if found.directory is None:
        return
    values = found.scores.to_numpy(dtype=np.float64)
    source = found.directory
    spec = locator(config.score)
    stage = _COMMANDS.get(spec.source, "diff")
    if len(values) and np.all(values == 0.0):
        raise SumcircuitError(
            f"every {config.score} score in {source!r} is 0: the fine-tuned model does not differ "
            f"from the base by this score (was sumcircuit {stage} run on a model against "
            f"itself?); run {stage} on a real fine-tune or choose another --score"
        )
    if config.rule == "topk" and len(values) > 1 and np.all(values == values[0]):
        raise SumcircuitError(
            f"every {config.score} score in {source!r} equals {values[0]:.3g}, so topk would pick "
            f"{config.level}s by index alone; choose another --score"
        )


def _key(row: dict[str, Any], level: str) -> Any:
    return (row["layer"], row["head"]) if level == "head" else row["layer"]
