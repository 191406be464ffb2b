"""Checks of a study against its data and its model, before the first stage writes anything.

:class:`~sumcircuit.study.config.StudyConfig` checks every value on its own (types, ranges,
:data:`~sumcircuit.configs.BOUNDS`). What only the data or the model can bound is checked here,
from the data file and the model's config (no weights load): that the data exists and has the
splits the stages read (and, for the adapt stage, enough train pairs for its gradient pass and
probe), that ``max_length`` fits the model's positions, and that circuit sizes, ``locate.k``,
``validate.controls``, ``lora.heads_per_layer`` and ``lora.random_draws`` fit its layers and
heads. :func:`check_study` runs before ``RUN/study.json`` is written, so a refused
start leaves the run directory as it was.
"""

from __future__ import annotations

import math

from sumcircuit.analysis.causal.faithfulness import default_sizes
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.models.shape import ModelShape, check_max_length, model_shape
from sumcircuit.study.arms import arm, distinct_random_sets
from sumcircuit.study.config import StudyConfig

__all__ = ["check_against_model", "check_data", "check_study"]


def check_study(config: StudyConfig) -> ModelShape:
    """Check ``config``'s data and every value its model bounds; return the model's shape."""
    shape = model_shape(config.model)
    check_against_model(config, shape)
    check_data(config)
    return shape


def check_data(config: StudyConfig) -> None:
    """The study's data loads (a packaged set is fetched once, as its first stage would) and
    has every split a stage reads. A Hugging Face dataset is left to its first stage."""
    from sumcircuit.data import load_dataset

    if str(config.data).startswith("hf:"):
        return
    dataset = load_dataset(
        config.data,
        document_field=config.finetune.document_field,
        summary_field=config.finetune.summary_field,
    )
    reads: dict[str, list[str]] = {"train": ["finetune and lora (their training documents)"]}
    if config.adapt.enabled:
        reads["train"].append("adapt")
    for section in ("diff", "faithfulness", "validate", "evaluate"):
        split = getattr(config, section).split
        reads.setdefault(split, []).append(f"{section}.split")
    for split, readers in reads.items():
        reader = " and ".join(readers)
        try:
            examples = dataset.split(split)
        except SumcircuitError as err:
            raise SumcircuitError(f"{reader}: {err}") from None
        if not examples:
            raise SumcircuitError(
                f"{reader}: dataset {dataset.name!r} has no documents in split {split!r}"
            )
    if config.adapt.enabled:
        _check_adapt_pairs(config, len(dataset.split("train")), dataset.name)


def _check_adapt_pairs(config: StudyConfig, n_train: int, name: str) -> None:
    """The adapt stage's gradient pass (``adapt.limit`` pairs) and probe (``probe_steps`` new
    batches) read the first train pairs: refuse more than the split holds, which would score
    fewer pairs or steps than configured."""
    adapt = config.adapt
    held = f"the {n_train} pairs of the train split of dataset {name!r}"
    if "gradients" in adapt.parts and adapt.limit is not None and adapt.limit > n_train:
        raise ConfigError(
            "limit",
            f"{{key}}={adapt.limit} exceeds {held}, the gradient pass's pairs; use at most "
            f"{n_train}",
            "adapt.limit",
        )
    if "probe" in adapt.parts and adapt.probe_pairs > n_train:
        fit = n_train // adapt.batch_size
        raise ConfigError(
            "probe_steps",
            f"{{key}}={adapt.probe_steps} steps of adapt.batch_size={adapt.batch_size} read "
            f"{adapt.probe_pairs} pairs, more than {held}; "
            + (f"use at most {fit} steps" if fit else f"lower adapt.batch_size to {n_train}"),
            "adapt.probe_steps",
        )


def check_against_model(config: StudyConfig, shape: ModelShape) -> None:
    """Every value of ``config`` bounded by the model's layers, heads or positions."""
    check_max_length(shape, config.max_length)
    _check_sizes(config, shape)
    circuit = _circuit_size(config, shape)
    _check_controls(config, shape, circuit)
    arms = [arm(name) for name in config.lora.arms]
    if "heads" in config.lora.arms and config.lora.heads_per_layer > shape.n_heads:
        raise ConfigError(
            "heads_per_layer",
            f"{{key}}={config.lora.heads_per_layer} exceeds the {shape.n_heads} heads per layer "
            f"of model {shape.name!r}; use at most {shape.n_heads}",
            "lora.heads_per_layer",
        )
    if any(a.drawn for a in arms):
        _check_draws(config, shape, circuit)
    if config.placement.enabled:
        _check_placement(config, shape, circuit)


def _check_placement(config: StudyConfig, shape: ModelShape, circuit: int | None) -> None:
    """The curve's sizes and random sets fit the model's layers, and an arm that reads the
    curve at the circuit's size finds that size on it."""
    from sumcircuit.analysis.placement.run import check_sizes
    from sumcircuit.layout import RunLayout

    try:
        check_sizes(config.placement, shape.n_layers)
    except ConfigError as err:
        raise err.relabel(f"placement.{err.field}") from None
    reading = [a for a in config.lora.arms if RunLayout.PLACEMENT in arm(a).reads]
    if reading and circuit is not None and circuit not in config.placement.sizes:
        raise ConfigError(
            "sizes",
            f"{{key}} {config.placement.sizes} lacks {circuit}, the circuit's size (locate.k), "
            f"at which the {reading[0]} arm takes the placement curve's best locator; add it",
            "placement.sizes",
        )


def _check_sizes(config: StudyConfig, shape: ModelShape) -> None:
    faith = config.faithfulness
    units = shape.units(faith.level)
    over = [n for n in faith.sizes if n > units]
    if over:
        raise ConfigError(
            "sizes",
            f"{{key}} holds {over[0]}, beyond the {units} {faith.level}s of model {shape.name!r}; "
            f"use sizes up to {units}",
            "faithfulness.sizes",
        )
    sizes = faith.sizes or default_sizes(units, faith.level)
    missing = [n for n in faith.control_sizes if n not in sizes]
    if missing:
        raise ConfigError(
            "control_sizes",
            f"{{key}} holds {missing[0]}, which is not among the curve's sizes "
            f"{','.join(map(str, sizes))} on model {shape.name!r}: random sets are drawn only at "
            "those sizes; set faithfulness.control_sizes to some of them, or [] for every size",
            "faithfulness.control_sizes",
        )


def _circuit_size(config: StudyConfig, shape: ModelShape) -> int | None:
    """The number of layers in the study's circuit when the config fixes it (``topk`` on
    layers), else None; refuses a ``locate.k`` that would select the whole model."""
    locate = config.locate
    units = shape.units(locate.level)
    if locate.rule == "topk" and locate.k >= units:
        raise ConfigError(
            "k",
            f"{{key}}={locate.k} would select every one of the {units} {locate.level}s of model "
            f"{shape.name!r}, so the circuit would be the whole model; use at most {units - 1}",
            "locate.k",
        )
    return locate.k if locate.rule == "topk" and locate.level == "layer" else None


def _check_controls(config: StudyConfig, shape: ModelShape, circuit: int | None) -> None:
    """``validate.controls`` random sets of the circuit's size must exist (a layer circuit of
    known size; other circuits are checked by validate itself)."""
    if circuit is None:
        return
    available = math.comb(shape.n_layers, circuit) - 1
    if config.validate.controls > available:
        raise ConfigError(
            "controls",
            f"{{key}}={config.validate.controls} asks for more random sets than exist: model "
            f"{shape.name!r} has {available} sets of {circuit} of its {shape.n_layers} layers "
            f"besides the circuit; use at most {available}",
            "validate.controls",
        )


def _check_draws(config: StudyConfig, shape: ModelShape, circuit: int | None) -> None:
    """``lora.random_draws`` must not exceed the distinct random layer sets: more would train
    the same layers again under another name."""
    draws, n = config.lora.random_draws, shape.n_layers
    if circuit is not None:
        distinct = distinct_random_sets(n, circuit)
        told = f"a {circuit}-layer circuit leaves {distinct} distinct sets among the other {n - circuit}"
    else:
        distinct = max((distinct_random_sets(n, c) for c in range(1, n)), default=0)
        told = f"a circuit of any size leaves at most {distinct} distinct sets among the other"
    if draws > distinct:
        raise ConfigError(
            "random_draws",
            f"{{key}}={draws} asks for more random layer sets than exist: {told} layers of the "
            f"{n}-layer model {shape.name!r}; use at most {distinct}",
            "lora.random_draws",
        )
