"""A model's sizes read from its config alone, before any weights load: how many layers, heads
per layer and positions it has, so that values bounded by them (``--max-length``, circuit sizes,
``lora.random_draws``) are checked in seconds, before a stage starts or data loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sumcircuit.errors import ConfigError, SumcircuitError

__all__ = ["ModelShape", "check_max_length", "model_shape"]


@dataclass(frozen=True)
class ModelShape:
    name: str
    model_type: str
    n_layers: int
    n_heads: int
    max_positions: int | None  # None: the config sets no limit

    @classmethod
    def from_config(cls, name: str, config: Any) -> ModelShape:
        from sumcircuit.models.archs import ARCHS, _first_attr

        config = getattr(config, "text_config", None) or config
        if config.model_type not in ARCHS:
            raise SumcircuitError(
                f"model {name!r} is a {config.model_type!r}, which is not supported; supported: "
                f"{', '.join(sorted(ARCHS))} (add a row to sumcircuit/models/archs.py)"
            )
        positions = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        return cls(
            name=name,
            model_type=config.model_type,
            n_layers=_first_attr(config, "num_hidden_layers", "n_layer"),
            n_heads=_first_attr(config, "num_attention_heads", "n_head"),
            max_positions=int(positions) if positions else None,
        )

    def units(self, level: str) -> int:
        """How many components a ``layer`` or ``head`` ranking has."""
        return self.n_layers if level == "layer" else self.n_layers * self.n_heads


def model_shape(name: str) -> ModelShape:
    """The shape of model ``name`` (preset, local directory or Hugging Face id) from its config:
    a preset's cached copy (fetched once if missing, as its first stage would), a directory's
    ``config.json``, or the hub's (from the local cache when the hub is unreachable)."""
    from transformers import AutoConfig

    from sumcircuit.models.loader import cached_model, check_available, hub_reachable
    from sumcircuit.models.registry import Preset, resolve

    source = resolve(name)
    kwargs: dict[str, Any] = {}
    if isinstance(source, Preset):
        path: Path | str = cached_model(name)
    elif isinstance(source, Path):
        path = source
    else:
        check_available(name)
        path = source
        kwargs["local_files_only"] = not hub_reachable()
    try:
        config = AutoConfig.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SumcircuitError(
            f"the config of model {name!r} cannot be read ({first}); give a preset, a saved "
            "model directory or a Hugging Face id"
        ) from None
    return ModelShape.from_config(name, config)


def check_max_length(shape: ModelShape, max_length: int, field: str = "max_length") -> None:
    """Refuse a ``max_length`` beyond the positions the model was built for (its position
    embeddings end there, or its rotary scaling was fitted up to there)."""
    if shape.max_positions is not None and max_length > shape.max_positions:
        raise ConfigError(
            field,
            f"{{key}}={max_length} exceeds the {shape.max_positions} positions model "
            f"{shape.name!r} attends over; use at most {shape.max_positions}",
        )
