"""An existing fine-tune analysed instead of training one (``sumcircuit run --finetuned``).

:func:`check_external` loads the base and the given fine-tune once, before any stage, and checks
them with :func:`~sumcircuit.models.pair.check_pair` (architecture, vocabulary, tokenizer,
parameter shapes): an incompatible model fails with one sentence and leaves no run directory.
The study's ``finetune`` stage then only records :class:`ExternalFinetune` — the path or id as
given and the model's identity (checksum of its weights, architecture) — in
``RUN/finetune/external.json``. Its stage hash covers the checksum, so changed weights at the same
path re-run every stage after it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import read_json, write_json

EXTERNAL_FILE = "external.json"


@dataclass
class ExternalFinetune:
    """The fine-tuned model a study was given: where it is and what it is."""

    path: str  # local directory (absolute) or Hugging Face id, as the study loads it
    identity: dict[str, Any] = field(default_factory=dict)  # sha256, architecture, parameters
    base_identity: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: str | Path) -> None:
        write_json(Path(folder) / EXTERNAL_FILE, self.to_dict())

    @classmethod
    def load(cls, folder: str | Path) -> ExternalFinetune:
        path = Path(folder) / EXTERNAL_FILE
        if not path.is_file():
            raise SumcircuitError(f"{str(path)!r} is missing; run the study again")
        try:
            return cls(**read_json(path))
        except (ValueError, TypeError) as err:
            raise SumcircuitError(
                f"{str(path)!r} is damaged ({err}); run the study again"
            ) from None

    @staticmethod
    def exists(folder: str | Path) -> bool:
        """Whether the stage in ``folder`` recorded an external fine-tune."""
        return (Path(folder) / EXTERNAL_FILE).is_file()


def check_external(model: str, finetuned: str, *, dtype: str = "float32") -> ExternalFinetune:
    """Load ``model`` and ``finetuned`` on the CPU, check that they pair, and describe them.

    Raises one :class:`SumcircuitError` sentence (from ``check_pair``) for a fine-tune of another
    architecture, vocabulary or tokenizer, or one identical to the base.
    """
    from sumcircuit.models.pair import load_pair

    base, tuned = load_pair(
        model, finetuned, dtype=dtype, device="cpu", stage="sumcircuit run --finetuned"
    )
    return ExternalFinetune(
        path=finetuned, identity=dict(tuned.identity), base_identity=dict(base.identity)
    )
