"""A circuit: the layers and heads that the locate stage picked, as a JSON file.

Written by ``sumcircuit locate``; read by ``validate`` (what to patch) and ``finetune
--circuit`` (what to adapt). Layers and heads are numbered from 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import read_json, write_json
from sumcircuit.models.archs import Arch

Level = Literal["layer", "head"]


@dataclass
class Circuit:
    model: dict[str, Any]  # identity of the base model (name, sha256, model_type, layers, heads)
    level: Level
    rule: str  # topk | zscore | fdr | manual
    score: str  # kl | js | entropy | weight | actmag | causal | manual
    layers: list[int]
    heads: list[tuple[int, int]] = field(default_factory=list)  # (layer, head) pairs
    scores: dict[str, Any] = field(default_factory=dict)  # the ranking the rule was applied to
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level not in ("layer", "head"):
            raise SumcircuitError(f"circuit level must be 'layer' or 'head', got {self.level!r}")
        self.layers = sorted({int(layer) for layer in self.layers})
        self.heads = sorted({(int(layer), int(head)) for layer, head in self.heads})
        if self.level == "head" and not self.layers:
            self.layers = sorted({layer for layer, _ in self.heads})

    def components(self) -> list[tuple[int, int | None]]:
        """``(layer, None)`` per layer for a layer circuit, ``(layer, head)`` for a head circuit."""
        if self.level == "layer":
            return [(layer, None) for layer in self.layers]
        return [(layer, head) for layer, head in self.heads]

    def check(self, arch: Arch, identity: dict[str, Any] | None = None) -> None:
        """Raise a clear error if the circuit does not fit ``arch`` (or was made for another model)."""
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
        known = {f for f in cls.__dataclass_fields__}
        extra = set(data) - known
        if extra:
            raise SumcircuitError(
                f"circuit file has unknown keys {sorted(extra)}; expected {sorted(known)}"
            )
        data = dict(data)
        data["heads"] = [tuple(h) for h in data.get("heads", [])]
        return cls(**data)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        path = Path(path)
        if not path.exists():
            raise SumcircuitError(
                f"circuit file {str(path)!r} does not exist; create it with sumcircuit locate"
            )
        return cls.from_dict(read_json(path))
