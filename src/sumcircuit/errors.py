"""The one exception type users see: a clear sentence naming the problem and the fix."""

from dataclasses import fields, is_dataclass


class SumcircuitError(Exception):
    """A user-facing error. The CLI prints its message alone, without a traceback."""


def reject_unknown_keys(data: dict, valid: object, what: str) -> None:
    """Raise naming the keys of ``data`` that ``valid`` (a dataclass or a collection of names)
    does not know, and the ones it does."""
    names = {f.name for f in fields(valid)} if is_dataclass(valid) else set(valid)  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise SumcircuitError(
            f"unknown key(s) {sorted(unknown)} in {what}; valid: {', '.join(sorted(names))}"
        )
