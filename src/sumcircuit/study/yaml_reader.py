"""YAML for the study config, read strictly: a repeated key is an error, not a silent override,
and aliases are limited, so a crafted file (a "billion laughs" alias bomb) cannot expand into
gigabytes of nested lists before the config is checked.

:func:`load_yaml` parses one document; every problem is one :class:`SumcircuitError` sentence
that names ``where`` (the file or the ``--set`` option) and, when YAML knows it, the line.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from sumcircuit.errors import SumcircuitError

__all__ = ["MAX_ALIASES", "MAX_BYTES", "MAX_NODES", "load_yaml"]

#: A study config is a few hundred bytes with no or a few aliases; these limits are far above
#: any real one and far below what would exhaust memory.
MAX_BYTES = 1 << 20
MAX_ALIASES = 100
MAX_NODES = 100_000
_MERGE = "tag:yaml.org,2002:merge"


class _TooBig(yaml.MarkedYAMLError):
    """A document past :data:`MAX_ALIASES` or :data:`MAX_NODES` (at ``mark``, when known)."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem=problem, problem_mark=mark)

    def __str__(self) -> str:
        return str(self.problem)


class StrictLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` that refuses duplicate keys and counts alias uses."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooBig(
                    f"it uses more than {MAX_ALIASES} aliases (*name); write the values out",
                    self.peek_event().start_mark,
                )
        return super().compose_node(parent, index)  # type: ignore[misc]

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue  # `<<: *base` merges keys that the mapping's own keys may override
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base constructor says so
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears more than once in one mapping; keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Node, memo: dict[int, int]) -> int:
    """How many nodes ``node`` becomes with every alias expanded (shared nodes counted each
    time they are used), computed without expanding them."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias is counted once, not followed forever
    size = 1
    if isinstance(node, SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = min(size, MAX_NODES + 1)
    return memo[id(node)]


def load_yaml(text: str, where: str) -> Any:
    """Parse ``text`` (from ``where``, e.g. ``config file 'study.yaml'``) strictly."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SumcircuitError(
            f"{where} is over {MAX_BYTES >> 20} MiB; a study config is a short YAML file"
        )
    loader = None
    try:
        loader = StrictLoader(text)  # the reader checks every character here
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise _TooBig(
                f"its aliases expand to more than {MAX_NODES:,} values; write the values out"
            )
        return loader.construct_document(node)
    except RecursionError:
        raise SumcircuitError(f"{where} is nested too deeply to be a study config") from None
    except yaml.YAMLError as err:
        raise SumcircuitError(f"{where} is not valid YAML{_where(err)}: {_problem(err)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _problem(err: yaml.YAMLError) -> str:
    if isinstance(err, _TooBig):
        return str(err)
    if isinstance(err, yaml.reader.ReaderError):
        return f"it holds a byte or character that YAML text cannot ({err.reason})"
    text = getattr(err, "problem", None) or str(err)
    return " ".join(str(text).split())
