"""The one exception type users see: a clear sentence naming the problem and the fix."""

from dataclasses import fields, is_dataclass


class SumcircuitError(Exception):
    """A user-facing error. The CLI prints its message alone, without a traceback."""


class DiskFullError(SumcircuitError):
    """The disk ran full while writing ``path``; ``keeps`` says what survived."""

    def __init__(self, path: object, keeps: str = "") -> None:
        self.path, self.keeps = path, keeps
        kept = keeps or "the previous version of the file is kept"
        super().__init__(f"no space left on device writing {path}; free space and rerun — {kept}")


class ConfigError(SumcircuitError):
    """A bad value of one config field. ``{key}`` in ``message`` stands for the name the user
    gave it: ``--max-new-tokens`` by default (a flag), ``evaluate.max_new_tokens`` in a study."""

    def __init__(self, field: str, message: str, label: str | None = None) -> None:
        self.field = field
        self.message = message
        self.label = label or "--" + field.replace("_", "-")
        super().__init__(message.replace("{key}", self.label))

    def relabel(self, label: str) -> "ConfigError":
        """The same error naming the field as ``label`` (``lora.epochs``, ``--lr``)."""
        return ConfigError(self.field, self.message, label)


def reject_unknown_keys(data: dict, valid: object, what: str) -> None:
    """Raise naming the keys of ``data`` that ``valid`` (a dataclass or a collection of names)
    does not know, and the ones it does."""
    names = {f.name for f in fields(valid)} if is_dataclass(valid) else set(valid)  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise SumcircuitError(
            f"unknown key(s) {sorted(unknown)} in {what}; valid: {', '.join(sorted(names))}"
        )
