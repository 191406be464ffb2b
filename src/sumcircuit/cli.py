"""Command-line entry point: ``sumcircuit <command> ...``.

Each command lives in its own module under ``sumcircuit.commands`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returning an exit code). ``main(argv)`` is kept testable: it never calls ``sys.exit``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import sumcircuit
from sumcircuit import commands
from sumcircuit.errors import SumcircuitError

log = logging.getLogger("sumcircuit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sumcircuit",
        description="Find, validate and fine-tune the summarization circuit of a GPT-like model.",
    )
    parser.add_argument(
        "--version", action="version", version=f"sumcircuit {sumcircuit.__version__}"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except SumcircuitError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; finished stages and checkpoints are kept, rerun to resume\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
