"""``StageResult``: a stage's result dataclass owns its files.

Every result (diff, scan, circuit, causal validation, training, evaluation) has the same small
protocol: ``save(dir)`` writes its files atomically into a directory, ``load(dir)`` reads them
back, ``to_dict``/``from_dict`` round-trip it through plain JSON types and ``to_frame`` gives its
main table. Each class names its own files (class attribute ``FILE``, plus module constants
beside it for the tables); no other module mentions them — studies, reports and ``locate`` go
through ``load`` and the class's query methods.

``load`` turns a missing, truncated or malformed file into one :class:`SumcircuitError`
sentence naming the file and the fix (the ``sumcircuit`` command that writes it), never a
``JSONDecodeError``, ``KeyError`` or pandas error from deep inside.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd

from sumcircuit.errors import SumcircuitError, reject_unknown_keys
from sumcircuit.io import atomic_path, read_json, write_json, write_text

__all__ = [
    "StageResult",
    "read_jsonl",
    "read_result_json",
    "read_table",
    "reading",
    "write_jsonl",
    "write_table",
]


class StageResult:
    """Mixin for a stage's result dataclass.

    Subclasses set ``FILE`` (the JSON file ``save`` writes last, whose presence marks a finished
    result) and ``STAGE`` (the ``sumcircuit`` command that writes it, for error messages). The defaults here serve a
    result that is one JSON file; results with tables override ``save``/``load``.
    ``FILE_OR_DIR``: ``save``/``load`` also accept the path of that JSON file itself.
    """

    FILE: ClassVar[str]
    STAGE: ClassVar[str]
    FILE_OR_DIR: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise SumcircuitError(
                f"a {cls.__name__} must be a JSON object, got {type(data).__name__}"
            )
        reject_unknown_keys(data, cls, f"the {cls.__name__}")
        required = [
            f.name
            for f in fields(cls)  # type: ignore[arg-type]
            if f.init and f.default is MISSING and f.default_factory is MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise SumcircuitError(f"the {cls.__name__} lacks {', '.join(missing)}")
        return cls(**data)

    def to_frame(self) -> pd.DataFrame:
        raise NotImplementedError

    def save(self, directory: str | Path) -> Path:
        """Write the result into ``directory``; returns the path of its JSON file."""
        path = self.path(directory)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        path = cls.path(directory)
        return cls.parse(path, read_result_json(path, cls.fix(directory)), cls.fix(directory))

    @classmethod
    def parse(cls, path: Path, data: Any, fix: str) -> Self:
        """``from_dict`` of the data read from ``path``, a damaged file as one clear error."""
        with reading(path, fix, check_exists=False):
            return cls.from_dict(data)

    # -- where the files are ----------------------------------------------------------------
    @classmethod
    def path(cls, directory: str | Path) -> Path:
        """The JSON file of the result saved in ``directory`` (or ``directory`` itself when the
        class accepts file paths and it ends in ``.json``)."""
        directory = Path(directory)
        if cls.FILE_OR_DIR and directory.suffix == ".json":
            return directory
        return directory / cls.FILE

    @classmethod
    def fix(cls, directory: str | Path) -> str:
        """The sentence's second half: how to make the missing or damaged result again."""
        return f"re-run the {cls.STAGE} stage (sumcircuit {cls.STAGE} --out {directory})"


# -- reading with one clear error --------------------------------------------------------------
def _reason(err: BaseException) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(err, KeyError):
        return f"no {err.args[0]!r} entry" if err.args else "an entry is missing"
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@contextmanager
def reading(path: str | Path, fix: str, *, check_exists: bool = True) -> Iterator[None]:
    """Turn a missing ``path``, or any error while its content is read or checked inside the
    block (a ``SumcircuitError`` of a check too), into one :class:`SumcircuitError` naming the
    file and ``fix``. Do not nest: the inner message would be wrapped twice."""
    path = Path(path)
    if check_exists and not path.is_file():
        raise SumcircuitError(f"{str(path)!r} does not exist; {fix}")
    try:
        yield
    except Exception as err:  # noqa: BLE001 - any parse failure of a data file is one message
        raise SumcircuitError(f"{str(path)!r} is damaged ({_reason(err)}); {fix}") from err


def read_result_json(path: str | Path, fix: str) -> dict[str, Any]:
    """A result's JSON object (a dict), or one clear error."""
    with reading(path, fix):
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON object was expected, not {type(data).__name__}")
        return data


def _check_complete(path: Path) -> None:
    """Files sumcircuit writes line by line end with a newline; a cut-off file does not."""
    raw = path.read_bytes()
    if not raw.strip():
        raise ValueError("the file is empty")
    if not raw.endswith(b"\n"):
        raise ValueError("the file is truncated: its last line is incomplete")


def read_table(
    path: str | Path, fix: str, *, columns: Iterable[str] = (), keys: Iterable[str] = ()
) -> pd.DataFrame:
    """A CSV (or ``.parquet``) table; ``columns`` must be present, ``keys`` whole numbers."""
    path = Path(path)
    with reading(path, fix):
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            _check_complete(path)
            frame = pd.read_csv(path)
        missing = [c for c in [*columns, *keys] if c not in frame.columns]
        if missing:
            raise ValueError(f"no column(s) {', '.join(missing)}")
        for key in keys:
            values = pd.to_numeric(frame[key], errors="coerce")
            if values.isna().any() or (values % 1 != 0).any():
                raise ValueError(f"column {key} holds values that are not whole numbers")
            frame[key] = values.astype(int)
        return frame


def write_table(path: str | Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` as CSV (or Parquet for a ``.parquet`` path), atomically, no index."""
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


def read_jsonl(path: str | Path, fix: str) -> list[dict[str, Any]]:
    """One JSON object per line (blank lines skipped), or one clear error naming the line."""
    path = Path(path)
    rows = []
    with reading(path, fix):
        if path.stat().st_size:
            raw = path.read_bytes()
            if not raw.endswith(b"\n"):
                raise ValueError("the file is truncated: its last line is incomplete")
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"line {lineno} is not valid JSON: {err.msg}") from err
            if not isinstance(row, dict):
                raise ValueError(f"line {lineno} is not a JSON object")
            rows.append(row)
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
