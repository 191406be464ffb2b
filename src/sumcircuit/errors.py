"""The one exception type users see: a clear sentence naming the problem and the fix."""


class SumcircuitError(Exception):
    """A user-facing error. The CLI prints its message alone, without a traceback."""
