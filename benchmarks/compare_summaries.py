"""Compare two studies' ``summary.json`` number by number (a refactor must not move any).

    python benchmarks/compare_summaries.py OLD/summary.json NEW/summary.json

Walks both JSON trees and prints every leaf that differs (numbers compared exactly unless
``--rtol`` is given), every key only one side has, and a closing count. Timings, provenance, the
resolved config and figure paths are left out by default (``--ignore`` takes more top-level
keys); keys only the new summary has are listed as additions, not failures, unless ``--strict``.
Exit status 1 when a shared leaf differs (or, with ``--strict``, any key is missing on a side).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

IGNORED = ("timings_s", "provenance", "config", "figures")


def walk(old: Any, new: Any, path: str, rtol: float, out: dict[str, list[str]]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                out["only_old"].append(where)
            elif key not in old:
                out["only_new"].append(where)
            else:
                walk(old[key], new[key], where, rtol, out)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            walk(a, b, f"{path}[{i}]", rtol, out)
        return
    if _same(old, new, rtol):
        out["same"].append(path)
    else:
        out["differ"].append(f"{path}: {old!r} -> {new!r}")


def _same(a: Any, b: Any, rtol: float) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b if rtol == 0 else math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)
    return a == b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--ignore", nargs="*", default=list(IGNORED), help="top-level keys")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (0: exact)")
    parser.add_argument("--strict", action="store_true", help="a key on one side only fails")
    args = parser.parse_args(argv)
    old, new = (json.loads(p.read_text()) for p in (args.old, args.new))
    for key in args.ignore:
        old.pop(key, None)
        new.pop(key, None)
    out: dict[str, list[str]] = {"same": [], "differ": [], "only_old": [], "only_new": []}
    walk(old, new, "", args.rtol, out)
    for title, key in (
        ("differ", "differ"),
        ("only in old", "only_old"),
        ("only in new", "only_new"),
    ):
        for line in out[key]:
            print(f"{title}: {line}")
    print(
        f"{len(out['same'])} leaves identical, {len(out['differ'])} differ, "
        f"{len(out['only_old'])} only in old, {len(out['only_new'])} only in new"
    )
    failed = out["differ"] or (args.strict and (out["only_old"] or out["only_new"]))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
