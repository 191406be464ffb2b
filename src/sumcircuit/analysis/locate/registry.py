"""The locator registry: every way of ranking components, registered once.

A *locator* ranks the layers (or heads) of a model, best first. What locators share is
:class:`Ranking`: component scores by level (a ``pd.Series`` indexed by layer or
``(layer, head)``, higher ranks first), the documents they were computed on, and the directory
they were read from. Each locator is registered with :func:`register_locator`: its name, the
kind of result it reads (``source``: a diff, an attribution, an exact scan, or nothing), the
study stage that produces that result, whether its ranking is signed or absolute (MIB's
convention: ``absolute`` ranks by |score|), and what it costs. ``locate``, ``faithfulness`` and
the study's stage planning iterate over :data:`LOCATORS`; adding a locator is one function and
one registration (see :mod:`sumcircuit.analysis.locate.position` for three).

A *baseline* locator (the position baselines) is drawn on every faithfulness curve as a control
that every informed locator must beat; it is never the study's circuit (``candidate=False``).

A locator's ``purpose`` says what its ranking is for: ``circuit`` (where the fine-tune changed or
what carries its behaviour; the default) or ``adapt`` (where a low-rank update can lower the task
loss, :mod:`sumcircuit.analysis.locate.adapt`). Adaptation locators are never a circuit
candidate and are drawn on a faithfulness curve only when named (``--sources rgn=DIR``);
``names(purpose="adapt")`` lists them for the placement curve.

A ranking also carries the identity of the model pair its source was computed on (the result's
provenance): :meth:`Ranking.check_models` refuses, in one sentence, a ranking of another pair
than the one it is applied to — ``faithfulness --diff`` of another fine-tune would patch layers
ranked on a different model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from sumcircuit.errors import SumcircuitError

log = logging.getLogger(__name__)

__all__ = [
    "LEVELS",
    "LOCATORS",
    "PURPOSES",
    "SOURCES",
    "Locator",
    "Ranking",
    "Shape",
    "check_computed_on",
    "locator",
    "register_locator",
    "same_model",
]

LEVELS = ("layer", "head")
Level = Literal["layer", "head"]
#: What a locator reads: a diff directory, an attribution directory, an exact scan directory,
#: an adaptation-scores directory (``sumcircuit adapt``), or nothing (a rule on positions alone).
Source = Literal["diff", "attribution", "exact", "adapt", "none"]
SOURCES: tuple[str, ...] = ("diff", "attribution", "exact", "adapt", "none")
#: What a ranking is for (see the module docstring).
PURPOSES: tuple[str, ...] = ("circuit", "adapt")


@dataclass(frozen=True)
class Shape:
    """The components a ranking is over: ``n_layers`` layers of ``n_heads`` heads."""

    n_layers: int
    n_heads: int

    def index(self, level: str) -> pd.Index:
        if level == "layer":
            return pd.Index(range(self.n_layers), name="layer")
        return pd.MultiIndex.from_product(
            [range(self.n_layers), range(self.n_heads)], names=["layer", "head"]
        )


@dataclass
class Ranking:
    """One locator's ranking of one level: ``scores`` (higher first; ties: lower index first),
    the documents it was computed on (``split``, ``limit``, the data set's identity ``data``
    and the document ``ids``; None for a locator that reads no documents, and ``ids`` None in
    results written before they were recorded) and the ``directory`` it was read from (None for
    the position baselines)."""

    name: str
    scores: pd.Series
    split: str | None = None
    limit: int | None = None
    directory: str | None = None
    #: the top-n rule when it is not a prefix of one order (evenly spaced layers)
    top_rule: Callable[[int], list[Any]] | None = field(default=None, repr=False)
    #: the model pair the source was computed on (``{"base": identity, "finetuned": identity}``
    #: from its provenance); empty for the position baselines, which read no model
    models: dict[str, Any] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)
    ids: list[str] | None = field(default=None, repr=False)

    def documents(self, role: str = "ranking") -> dict[str, Any] | None:
        """The documents this ranking was computed on as a selection record
        (:func:`sumcircuit.analysis.locate.selection.record`); None for a position baseline."""
        if self.directory is None:
            return None
        from sumcircuit.analysis.locate.selection import record

        return record(role, self.data, self.split, self.limit, self.ids, source=self.name)

    def order(self) -> list[Any]:
        """Every component, best first (score descending, then index order)."""
        values = self.scores.to_numpy(dtype=np.float64)
        order = np.lexsort((np.arange(len(values)), -values))
        return [plain_key(self.scores.index[i]) for i in order]

    def top(self, n: int) -> list[Any]:
        """The ``n`` best components (in ranking order)."""
        if self.top_rule is not None:
            return self.top_rule(n)
        return self.order()[:n]

    def source(self) -> dict[str, Any]:
        """How ``locate`` reads this ranking again: locator name and directory."""
        return {"locator": self.name, "directory": self.directory}

    def check_models(self, models: dict[str, Any], used: str) -> None:
        """Refuse this ranking unless its source was computed on ``models`` (see
        :func:`check_computed_on`; ``used``: what they are, for the message)."""
        if self.directory is None:  # a position baseline: no model ranked it
            return
        check_computed_on(
            self.models, models, f"the {self.name} ranking in {self.directory!r}", used
        )


def check_computed_on(
    recorded: dict[str, Any], models: dict[str, Any], what: str, used: str
) -> None:
    """Refuse ``what``, computed on the model pair ``recorded`` (``{"base": identity,
    "finetuned": identity}``), unless it is the pair ``models`` (the ``used`` models); a role
    that either does not record cannot be checked and is said so in a log line."""
    for role in ("base", "finetuned"):
        mine, theirs = recorded.get(role) or {}, models.get(role) or {}
        if not mine or not theirs:
            log.warning("%s records no %s model identity to check against the %s", what, role, used)
            continue
        if not same_model(mine, theirs):
            raise SumcircuitError(
                f"{what} was computed with {role} model {_named(mine)}, not {_named(theirs)} of "
                f"the {used}; use results computed on the same base and fine-tuned model "
                "(rerun the stage that wrote it with them)"
            )


#: The identity fields two loads of one model agree on when no checksum was recorded (a Hugging
#: Face id, sharded weights).
_SHAPE_KEYS = ("model_type", "layers", "heads", "hidden", "n_params")


def same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two recorded model identities name the same weights: by sha256 where both have
    one, else by name and every shape field both record."""
    if a.get("sha256") and b.get("sha256"):
        return a["sha256"] == b["sha256"]
    keys = [k for k in ("name", *_SHAPE_KEYS) if k in a and k in b]
    return all(a[k] == b[k] for k in keys)


def _named(identity: dict[str, Any]) -> str:
    """``'runs/ft' (sha256 1a2b3c4d5e6f)`` for a message."""
    sha = identity.get("sha256")
    return f"{identity.get('name')!r}" + (f" (sha256 {sha[:12]})" if sha else "")


#: ``scores(result, level, shape, name) -> pd.Series`` (raw, before signed/absolute): ``result``
#: is the loaded source (a ``DiffResult``, ``AttributionResult``, ``ExactResult``; None for
#: ``none``).
ScoreFn = Callable[[Any, str, Shape, str], pd.Series]


@dataclass(frozen=True)
class Locator:
    """A registered locator (see the module docstring)."""

    name: str
    source: Source
    scores: ScoreFn
    ranking: Literal["signed", "absolute"] = "signed"
    cost: str = ""
    #: the declared cost order ``locate --score faithful`` breaks a tie by (cheaper first):
    #: 0 free (read from the diff, or no documents), 1 one gradient pass per model, 2 K
    #: gradient passes, 3 one patched forward per component
    cost_rank: int = 0
    stage: str | None = None  # the study stage whose folder it reads
    levels: tuple[str, ...] = LEVELS
    rules: tuple[str, ...] = ("topk", "zscore")
    candidate: bool = True  # may be chosen as the study's circuit (baselines may not)
    purpose: Literal["circuit", "adapt"] = "circuit"  # what the ranking is for
    top_rule: Callable[[int, str, Shape], list[Any]] | None = None
    help: str = ""

    def rank(
        self, level: str, directory: str | Path | None = None, shape: Shape | None = None
    ) -> Ranking:
        """This locator's ranking of ``level`` from ``directory`` (its source's result)."""
        if level not in self.levels:
            raise SumcircuitError(
                f"the {self.name} locator has no {level}-level ranking; use --level "
                f"{' or '.join(self.levels)} or another locator"
            )
        if self.source != "none" and directory is None:
            raise SumcircuitError(
                f"the {self.name} locator reads a {self.source} result: give its directory "
                f"(--source {self.name}=DIR)"
            )
        if self.source == "none" and shape is None:
            raise SumcircuitError(f"the {self.name} locator needs the model's shape")
        result = None if directory is None else SOURCE_LOADERS[self.source](Path(directory))
        values = self.scores(result, level, shape, self.name)  # type: ignore[arg-type]
        if self.ranking == "absolute":
            values = values.abs()
        data = {} if result is None else result.provenance.get("data", {})
        split, limit = data.get("split"), data.get("limit")
        rule = None
        if self.top_rule is not None:
            top_rule, shape_ = self.top_rule, shape
            rule = lambda n: top_rule(n, level, shape_)  # noqa: E731
        models = {} if result is None else dict(result.provenance.get("models") or {})
        ids = data.get("ids") or getattr(result, "doc_ids", None) or None
        identity = {k: data[k] for k in ("name", "checksum") if k in data}
        return Ranking(
            self.name, values, split, limit, _str(directory), rule, models, identity, ids
        )


def sources_field() -> Any:
    """The ``sources`` option of a config that reads locators: locator name -> directory of the
    result it reads, for every locator that does not read the diff."""
    return field(
        default_factory=dict,
        metadata={
            "help": "result directory of each locator that does not read the diff, e.g. "
            "atp=runs/attribute/atp,exact=runs/exact",
            "metavar": "LOCATOR=DIR,...",
        },
    )


LOCATORS: dict[str, Locator] = {}
#: How each kind of source directory is loaded (filled by the module that registers them).
SOURCE_LOADERS: dict[str, Callable[[Path], Any]] = {}


def register_locator(name: str, *, source: Source, **options: Any) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator: register ``fn(directory, level, shape, name) -> pd.Series`` as locator
    ``name`` (options: the fields of :class:`Locator`)."""

    def add(fn: ScoreFn) -> ScoreFn:
        if name in LOCATORS:
            raise ValueError(f"locator {name!r} is registered twice")
        spec = Locator(name=name, source=source, scores=fn, **options)
        if spec.purpose not in PURPOSES:
            raise ValueError(f"locator {name!r}: purpose must be one of {PURPOSES}")
        if spec.purpose == "adapt" and spec.candidate:
            raise ValueError(f"adaptation locator {name!r} cannot be a circuit candidate")
        LOCATORS[name] = spec
        return fn

    return add


#: Old locator names, accepted with a deprecation warning.
RENAMED = {"ig-activations": "ig-direct"}


def locator(name: str) -> Locator:
    """The registered locator ``name`` (a renamed one by its new name, with a warning), or one
    sentence listing the valid names."""
    _load_builtin()
    if name in RENAMED:
        log.warning("locator %s is deprecated; use %s", name, RENAMED[name])
        name = RENAMED[name]
    if name not in LOCATORS:
        raise SumcircuitError(f"unknown locator {name!r}; valid: {', '.join(names())}")
    return LOCATORS[name]


def names(*, candidates_only: bool = False, purpose: str | None = None) -> list[str]:
    """Every registered locator's name, the baselines last (only those that may be a study's
    circuit, with ``candidates_only``; only those of one ``purpose``, with it)."""
    _load_builtin()
    ordered = sorted(LOCATORS, key=lambda n: not LOCATORS[n].candidate)  # stable
    return [
        n
        for n in ordered
        if (LOCATORS[n].candidate or not candidates_only)
        and (purpose is None or LOCATORS[n].purpose == purpose)
    ]


def _load_builtin() -> None:
    """Import the modules that register the built-in locators (once)."""
    from sumcircuit.analysis.locate import adapt, position, sources  # noqa: F401


def plain_key(key: Any) -> Any:
    """A component index as plain ints: ``layer`` or ``(layer, head)``."""
    return tuple(int(x) for x in key) if isinstance(key, tuple) else int(key)


def _str(directory: str | Path | None) -> str | None:
    return None if directory is None else str(directory)
