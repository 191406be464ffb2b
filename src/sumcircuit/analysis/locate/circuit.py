"""A circuit: the layers and heads that the locate stage picked, as a JSON file.

Written by ``sumcircuit locate``; read by ``validate`` (what to patch) and ``finetune
--circuit`` (what to adapt). ``save``/``load`` take a directory (``DIR/circuit.json``) or the
path of the JSON file itself. Layers and heads are numbered from 0.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.results import StageResult

log = logging.getLogger(__name__)

Level = Literal["layer", "head"]


def _index(value: Any, what: str) -> int:
    """A layer or head number: a whole number from 0 (``1.7`` or ``true`` is no layer)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise SumcircuitError(
            f"circuit {what} {value!r} is not a {what} number (a whole number from 0)"
        )
    return int(value)


#: Scores of circuits written before a locator was renamed (still read).
LEGACY_SCORES = ("causal", "attribution", "ig-activations")


def score_names() -> tuple[str, ...]:
    """What a circuit's ``score`` may be: every registered locator, ``manual`` (a circuit
    written by hand), and the older names :data:`LEGACY_SCORES`."""
    from sumcircuit.analysis.locate.registry import names  # the registry imports the sources

    return (*names(), "manual", *LEGACY_SCORES)


@dataclass
class Circuit(StageResult):
    FILE: ClassVar[str] = "circuit.json"
    STAGE: ClassVar[str] = "locate"
    FILE_OR_DIR: ClassVar[bool] = True  # users pass --circuit path/circuit.json

    model: dict[str, Any]  # identity of the base model (name, sha256, model_type, layers, heads)
    level: Level
    rule: str  # topk | zscore | fdr | manual
    score: str  # a registered locator (score_names()) or manual
    layers: list[int]
    heads: list[tuple[int, int]] = field(default_factory=list)  # (layer, head) pairs
    scores: dict[str, Any] = field(default_factory=dict)  # the ranking the rule was applied to
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the documents that selected it (selection records, :mod:`...locate.selection`): its
    #: ranking's, and for ``--score faithful`` the faithfulness curves' that chose the locator;
    #: validate refuses to score on them. Empty: a manual circuit, or one written before.
    documents: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.score not in score_names():
            raise SumcircuitError(
                f"circuit score {self.score!r} is not a locator; valid: {', '.join(score_names())}"
            )
        if self.level not in ("layer", "head"):
            raise SumcircuitError(f"circuit level must be 'layer' or 'head', got {self.level!r}")
        if not isinstance(self.layers, (list, tuple)):
            raise SumcircuitError(
                f"circuit layers must be a list of layer numbers, got {self.layers!r}"
            )
        self.layers = sorted({_index(layer, "layer") for layer in self.layers})
        pairs = [h for h in self.heads if isinstance(h, (list, tuple)) and len(h) == 2]
        if len(pairs) != len(self.heads):
            raise SumcircuitError("circuit heads must be [layer, head] pairs of numbers")
        self.heads = sorted(
            {(_index(layer, "layer"), _index(head, "head")) for layer, head in pairs}
        )
        if self.level == "head" and not self.layers:
            self.layers = sorted({layer for layer, _ in self.heads})

    def components(self) -> list[tuple[int, int | None]]:
        """``(layer, None)`` per layer for a layer circuit, ``(layer, head)`` for a head circuit."""
        if self.level == "layer":
            return [(layer, None) for layer in self.layers]
        return [(layer, head) for layer, head in self.heads]

    def check_not_empty(self, source: str | Path) -> None:
        """Raise naming ``source`` (the circuit's file) when the circuit has no component."""
        if not self.components():
            raise SumcircuitError(
                f"the circuit {str(source)!r} is empty (no {self.level}s): there is nothing to "
                "patch or adapt; locate a circuit with at least one component"
            )

    def check(self, arch: Arch, identity: dict[str, Any] | None = None) -> None:
        """Raise a clear error if the circuit does not fit ``arch`` (or was made for another
        model); warn loudly when it is the whole model."""
        every = arch.n_layers if self.level == "layer" else arch.n_layers * arch.n_heads
        if len(self.components()) >= every:
            log.warning(
                "the circuit holds every one of the model's %d %ss: it is the whole model, not a "
                "circuit (sufficiency and necessity are 1 by construction, and no random control "
                "of its size exists)",
                every,
                self.level,
            )
        for layer in self.layers:
            arch.check_layer(layer)
        for layer, head in self.heads:
            arch.check_layer(layer)
            arch.check_head(head)
        if identity and self.model.get("sha256") and identity.get("sha256"):
            same_shape = all(
                self.model.get(k) == identity.get(k) for k in ("model_type", "layers", "heads")
            )
            if not same_shape:
                raise SumcircuitError(
                    f"the circuit was made for model {self.model.get('name')!r} "
                    f"({self.model.get('model_type')}, {self.model.get('layers')} layers), not for "
                    f"{identity.get('name')!r}; run locate on a diff of this model"
                )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["heads"] = [list(h) for h in self.heads]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Circuit:
        data = dict(data)
        data["heads"] = [tuple(h) for h in data.get("heads", [])]
        return super().from_dict(data)

    def to_frame(self) -> pd.DataFrame:
        """One row per component: ``layer`` and ``head`` (−1 for a whole layer)."""
        rows = [(layer, -1 if head is None else head) for layer, head in self.components()]
        return pd.DataFrame(rows, columns=["layer", "head"])
