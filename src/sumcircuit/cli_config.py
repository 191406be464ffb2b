"""CLI flags generated from a config dataclass, so a field, its default and its flag live in one
place (the field).

:class:`ConfigFlags` adds one flag per field: ``--max-new-tokens`` for ``max_new_tokens``, its
type from the annotation (``bool`` as ``--x/--no-x``, lists comma-separated, ``(layer, head)``
pairs as ``2.1,3.4``), its choices and help from the field's metadata, its default from the
dataclass. ``build`` turns the parsed arguments back into the config::

    FLAGS = ConfigFlags(EvaluateConfig, required=("out",))
    FLAGS.add_to(parser)  # in register()
    config = FLAGS.build(args)  # in the command
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, get_args, get_origin

from sumcircuit.configs import (
    DictConfig,
    NotFiniteError,
    choices_of,
    coerce,
    describe,
    field_default,
    field_types,
    is_mapping,
    is_sequence,
    strip_optional,
)
from sumcircuit.errors import ConfigError

__all__ = ["ConfigFlags", "flag_name"]


def flag_name(name: str) -> str:
    """``max_new_tokens`` -> ``--max-new-tokens``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class ConfigFlags:
    """The flags of config class ``cls``: one per field except those in ``skip``.

    ``rename`` maps a field to another flag name (the field's own name stays an alias);
    ``required`` makes fields that have a default mandatory on the command line (e.g. ``out``);
    ``help`` overrides a field's help text for this command.
    """

    cls: type[DictConfig]
    skip: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    help: Mapping[str, str] = field(default_factory=dict)

    def fields(self) -> list[Field]:
        return [f for f in fields(self.cls) if f.name not in self.skip]  # type: ignore[arg-type]

    def flag(self, name: str) -> str:
        """The flag of field ``name`` on this command."""
        return flag_name(self.rename.get(name, name))

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add a flag for every field (its default the dataclass default)."""
        hints = field_types(self.cls)
        for f in self.fields():
            hint, default = hints[f.name], field_default(f)
            names = [self.flag(f.name)]
            if f.name in self.rename:
                names.append(flag_name(f.name))
            kwargs: dict[str, Any] = {"dest": f.name}
            if default is MISSING or f.name in self.required:
                kwargs["required"] = True
            else:
                kwargs["default"] = default
            text = self.help.get(f.name, f.metadata.get("help", ""))
            if strip_optional(hint) is bool:
                suffix = " (default: on)" if default is True else ""
                kwargs.update(action=argparse.BooleanOptionalAction, help=_escape(text + suffix))
                parser.add_argument(*names, **kwargs)
                continue
            choices = choices_of(f, hint)
            if choices is not None:
                kwargs["choices"] = choices
            elif is_sequence(hint):
                kwargs["metavar"] = f.metadata.get("metavar", _list_metavar(hint))
            elif is_mapping(hint):
                kwargs["metavar"] = f.metadata.get("metavar", "NAME=VALUE,...")
            kwargs["type"] = _parser(hint if choices is None else str)
            shown = "" if default in (MISSING, None) else f" (default: {_show(default)})"
            kwargs["help"] = _escape(text + ("" if kwargs.get("required") else shown))
            parser.add_argument(*names, **kwargs)

    def build(self, args: argparse.Namespace, **fixed: Any) -> Any:
        """The config from parsed ``args`` (``fixed`` values set fields without a flag).

        A bad value is one sentence naming the flag the user typed.
        """
        values = {f.name: getattr(args, f.name) for f in self.fields()} | fixed
        try:
            return self.cls(**values)
        except ConfigError as err:
            if err.field in self.rename:
                raise err.relabel(self.flag(err.field)) from None
            raise


def _parser(hint: Any) -> Any:
    """An argparse ``type``: the text as ``hint``, or a usage error saying what was expected."""

    def parse(text: str) -> Any:
        try:
            return coerce(text, hint, "value")
        except NotFiniteError:  # a number, but NaN or inf: the config says so, naming the flag
            return text
        except ConfigError:
            raise argparse.ArgumentTypeError(f"expected {describe(hint)}, got {text!r}") from None

    parse.__name__ = describe(hint)  # argparse names the type in some messages
    return parse


def _list_metavar(hint: Any) -> str:
    inner = get_args(strip_optional(hint))[0]
    if get_origin(inner) is tuple:
        return "L.H,..."
    return {int: "N,...", float: "X,...", str: "NAME,..."}.get(inner, "A,...")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(".".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


def _escape(text: str) -> str:
    return text.replace("%", "%%")
