"""``DictConfig``: a stage's dataclass config to a plain dict (JSON, YAML) and back, with every
value checked against its field's type.

A field's annotation says what it accepts (``int``, ``float``, ``bool``, ``str``, ``X | None``,
``Literal[...]``, ``list[int]``, ``tuple[str, ...]``, ``list[tuple[int, int]]``,
``dict[str, str]``); its
``metadata`` holds the ``help`` text of its CLI flag and, for a fixed set of strings, its
``choices``. :func:`coerce` turns a value from YAML or the command line into that type (``"2"``
to 2, ``"2,3"`` to ``[2, 3]``, ``"2.1"`` to ``(2, 1)``, ``"atp=DIR,exact=DIR"`` to a dict) or raises a :class:`ConfigError` naming
the field, so a bad value fails when the config is built, not when its stage starts. A float
field is finite: ``nan`` and ``inf`` are refused (no setting needs them, and JSON cannot hold
them).
"""

from __future__ import annotations

import functools
import math
import types
from dataclasses import MISSING, Field, asdict, fields
from typing import Any, Literal, NamedTuple, Self, Union, get_args, get_origin, get_type_hints

from sumcircuit.errors import ConfigError, SumcircuitError, reject_unknown_keys

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class DictConfig:
    """Mixin for dataclass configs: typed fields, ``to_dict``/``from_dict``.

    ``__post_init__`` coerces every field to its annotation and checks its ``choices``; a
    subclass that adds range checks calls ``super().__post_init__()`` first. Fields whose
    metadata has ``"section": True`` (nested configs) are left to the subclass.
    """

    def __post_init__(self) -> None:
        hints = field_types(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            if f.metadata.get("section"):
                continue
            value = coerce(getattr(self, f.name), hints[f.name], f.name)
            choices = f.metadata.get("choices")
            if choices is not None and value is not None and value not in choices:
                raise ConfigError(
                    f.name, f"unknown {{key}} {value!r}; choose from {', '.join(choices)}"
                )
            setattr(self, f.name, value)
        check_bounds(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any], section: str | None = None) -> Self:
        """Build from a plain dict. With ``section``, errors name the key as ``section.key``."""
        where = f"section {section!r}" if section else f"the {cls.__name__}"
        reject_unknown_keys(data, cls, where)
        if section is None:
            return cls(**data)
        try:
            return cls(**data)
        except ConfigError as err:
            raise err.relabel(f"{section}.{err.field}") from None
        except SumcircuitError as err:
            raise SumcircuitError(f"in section {section!r}: {err}") from None


# -- field types ------------------------------------------------------------------------------
@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of each field of dataclass ``cls``."""
    return get_type_hints(cls)


def field_default(f: Field) -> Any:
    """A field's default value (``MISSING`` when it has none)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def choices_of(f: Field, hint: Any) -> tuple[Any, ...] | None:
    """The fixed set of values a field takes: its ``choices`` metadata or its ``Literal``."""
    if "choices" in f.metadata:
        return tuple(f.metadata["choices"])
    literal = strip_optional(hint)
    return get_args(literal) if get_origin(literal) is Literal else None


def strip_optional(hint: Any) -> Any:
    """``X | None`` -> ``X``; any other hint unchanged."""
    if get_origin(hint) in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return hint


def is_mapping(hint: Any) -> bool:
    """Whether ``hint`` (``X | None`` allowed) is a dict type."""
    return get_origin(strip_optional(hint)) is dict


def is_sequence(hint: Any) -> bool:
    """Whether ``hint`` (``X | None`` allowed) is a list or tuple type."""
    return get_origin(strip_optional(hint)) in (list, tuple)


def describe(hint: Any) -> str:
    """``hint`` in words, for error messages: ``list[int]`` -> 'a list of integers (e.g. 2,3)'."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return " or ".join(describe(a) for a in options)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is dict:
        return "a comma-separated list of name=value pairs (e.g. atp=runs/attribute/atp)"
    if origin in (list, tuple) and (origin is list or (len(args) == 2 and args[1] is ...)):
        inner = strip_optional(args[0]) if args else Any
        if get_origin(inner) is tuple:
            return "a comma-separated list of pairs like 2.1,3.4"
        return f"a comma-separated list of {_plural(inner)}"
    if origin is tuple:
        return "a pair like 2.1" if len(args) == 2 else f"{len(args)} values joined by '.'"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _plural(hint: Any) -> str:
    return {int: "integers (e.g. 2,3,5)", float: "numbers", str: "names (e.g. q,v)"}.get(
        hint, "values"
    )


class NotFiniteError(ConfigError):
    """A float field given NaN or inf: said as such, not as "must be a number"."""


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint`` (strings from a command line or YAML are parsed), or raise
    a :class:`ConfigError` naming ``key``."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return coerce(value, option, key)
            except NotFiniteError:
                raise
            except ConfigError:
                continue
        raise _bad(key, hint, value)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(
            key, f"unknown {{key}} {value!r}; choose from {', '.join(map(str, args))}"
        )
    if origin in (list, tuple):
        return _coerce_sequence(value, hint, key)
    if origin is dict:
        return _coerce_mapping(value, hint, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _bad(key, hint, value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _bad(key, hint, value)
    if hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is None:
            raise _bad(key, hint, value)
        if not math.isfinite(number):  # no setting means NaN or inf; JSON cannot even hold them
            raise NotFiniteError(key, f"{{key}} must be a finite number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise _bad(key, hint, value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _bad(key, hint, value)
    return value


def _coerce_sequence(value: Any, hint: Any, key: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    variadic = origin is list or (len(args) == 2 and args[1] is ...)
    given = value
    if isinstance(value, str):  # "2,3,5" for a list; "2.1" for a fixed-size tuple
        sep = "," if variadic else "."
        value = [part.strip() for part in value.split(sep) if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise _bad(key, hint, given)
    try:
        if variadic:
            inner = args[0] if args else Any
            items = [coerce(item, inner, key) for item in value]
        else:
            if len(value) != len(args):
                raise _bad(key, hint, given)
            items = [coerce(item, inner, key) for item, inner in zip(value, args, strict=True)]
    except NotFiniteError:
        raise
    except ConfigError:
        raise _bad(key, hint, given) from None
    return tuple(items) if origin is tuple else items


def _coerce_mapping(value: Any, hint: Any, key: str) -> dict[Any, Any]:
    """A mapping, or ``"name=value,name=value"`` from a command line."""
    key_hint, value_hint = get_args(hint) or (Any, Any)
    given = value
    if isinstance(value, str):
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise _bad(key, hint, given)
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise _bad(key, hint, given)
    try:
        return {coerce(k, key_hint, key): coerce(v, value_hint, key) for k, v in value.items()}
    except NotFiniteError:
        raise
    except ConfigError:
        raise _bad(key, hint, given) from None


def _bad(key: str, hint: Any, value: Any) -> ConfigError:
    return ConfigError(key, f"{{key}} must be {describe(hint)}, got {value!r}")


# -- value checks for __post_init__ ----------------------------------------------------------
class Bound(NamedTuple):
    high: int
    why: str  # one sentence: why no sensible run goes past ``high``
    low: int | None = None  # only where the field's own config checks none


_SEEDS = "numpy's and CUDA's generators take 32-bit seeds"
_SIZES = "no supported model has that many components"
#: Bounds of fields by name, in every config that has such a field (each item of a list field).
#: Past a bound lies a typo or a runaway number (``1e29`` epochs), refused before any work;
#: bounds that depend on the model (layers, heads, positions) are checked by the study's
#: preflight and by the stages.
BOUNDS: dict[str, Bound] = {
    "epochs": Bound(100, "a pretrained model fine-tunes in a few epochs"),
    "grad_accum": Bound(1024, "accumulating that many micro-batches is a typo for the batch size"),
    "batch_size": Bound(4096, "no accelerator holds that many prompts in one batch"),
    "rank": Bound(4096, "a LoRA rank beyond the supported models' hidden sizes adds no capacity"),
    "n_boot": Bound(100_000, "bootstrap intervals settle to the third digit by 10,000 resamples"),
    "controls": Bound(1000, "1,000 random sets already place a percentile to 0.1%"),
    "ig_steps": Bound(256, "the path integral converges within a few dozen points"),
    "num_beams": Bound(64, "beam search stops gaining long before 64 beams"),
    "eval_points": Bound(1000, "each point is a pass over the validation documents"),
    "random_draws": Bound(100, "100 draws place the targeted arm's percentile to 1%"),
    "heads_per_layer": Bound(1024, "no supported model has that many heads in a layer"),
    "seed": Bound(2**32 - 1, _SEEDS),
    "seeds": Bound(2**32 - 1, _SEEDS, low=0),
    "sizes": Bound(1_000_000, _SIZES, low=1),
    "control_sizes": Bound(1_000_000, _SIZES, low=1),
}


def check_bounds(config: object) -> None:
    """Raise naming the first field of ``config`` (or item of a list field) outside its
    :data:`BOUNDS`."""
    for f in fields(config):  # type: ignore[arg-type]
        if f.name not in BOUNDS:
            continue
        high, why, low = BOUNDS[f.name]
        value = getattr(config, f.name)
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if not isinstance(item, (int, float)) or isinstance(item, bool):
                continue  # None (a default), or a type its own check refuses
            if low is not None and not item >= low:
                raise ConfigError(f.name, f"{{key}} must be at least {low}, got {_shown(value)}")
            if not item <= high:
                raise ConfigError(
                    f.name, f"{{key}} must be at most {high:,}, got {_shown(value)}: {why}"
                )


def _shown(value: Any) -> str:
    """A value for a message: a list as written on a command line, huge numbers shortened."""
    if isinstance(value, (list, tuple)):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, int) and abs(value) >= 10**12:
        return f"{value:.3g}"
    return str(value)


def check_at_least(config: object, names: tuple[str, ...], low: float) -> None:
    """Raise naming the first of ``names`` whose value (if not None) is below ``low``."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < low:
            raise ConfigError(name, f"{{key}} must be at least {low:g}, got {value}")


def check_fraction(config: object, name: str, *, one: bool = False) -> None:
    """Raise unless ``name`` lies in [0, 1) (``one``: [0, 1])."""
    value = getattr(config, name)
    if not (0.0 <= value <= 1.0 if one else 0.0 <= value < 1.0):
        interval = "[0, 1]" if one else "[0, 1)"
        raise ConfigError(name, f"{{key}} must lie in {interval}, got {value}")
