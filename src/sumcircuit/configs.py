"""``DictConfig``: a stage's dataclass config to a plain dict (JSON, YAML) and back."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Self

from sumcircuit.errors import reject_unknown_keys


class DictConfig:
    """Mixin for dataclass configs; ``from_dict`` names unknown keys with the valid ones."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        reject_unknown_keys(data, cls, f"the {cls.__name__}")
        return cls(**data)
