"""Forward hooks held in a context manager: registered on entry, always removed on exit.

Nothing global survives the ``with`` block, also when the body raises. A hooked module name that
does not exist raises before any hook is registered (lm-evaluation-harness' steered-model habit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from torch import nn

from sumcircuit.errors import SumcircuitError

Hook = Callable[..., Any]


@contextmanager
def hooks(
    model: nn.Module,
    forward: Mapping[str, Hook] | None = None,
    pre: Mapping[str, Hook] | None = None,
    *,
    with_kwargs: bool = False,
) -> Iterator[None]:
    """Register ``forward`` hooks ``fn(module, args, output)`` and forward-pre hooks
    ``fn(module, args)`` on the named submodules for the duration of the block.

    A hook returning a value replaces the output (forward) or the positional args (pre), as in
    ``torch.nn.Module.register_forward_hook``. With ``with_kwargs`` hooks also get kwargs.
    """
    plan: list[tuple[nn.Module, Literal["forward", "pre"], Hook]] = []
    for kind, table in (("forward", forward or {}), ("pre", pre or {})):
        for name, fn in table.items():
            try:
                module = model.get_submodule(name)
            except AttributeError as err:
                raise SumcircuitError(
                    f"cannot hook {name!r}: the model has no such module (is the architecture "
                    "table in sumcircuit/models/archs.py right for this model?)"
                ) from err
            plan.append((module, kind, fn))  # type: ignore[arg-type]
    handles = []
    try:
        for module, kind, fn in plan:
            if kind == "forward":
                handles.append(module.register_forward_hook(fn, with_kwargs=with_kwargs))
            else:
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))
        yield
    finally:
        for handle in handles:
            handle.remove()
