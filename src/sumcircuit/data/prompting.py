"""Turn (document, summary) pairs into token ids with region masks.

Layout of one encoded example (``plain`` template)::

    [bos?] <document tokens> "\\nTL;DR:" " <summary tokens>" <eos>
           └── doc_span ───┘             └── summary_start ... end ┘

The document is truncated to fit ``max_length``; the summary never is (an example whose summary
alone does not fit is skipped and counted). Template pieces are tokenized separately so that the
document/summary boundaries are exact token indices; the ``chat`` template renders the
tokenizer's chat template around a placeholder and splits the text there.

Regions of *query positions* (what attention metrics average over):
- ``document``: the document's own tokens;
- ``summary``: the positions whose next token is a summary token (the last prompt token up to
  the last summary token) — where the model summarizes; their labels are the summary tokens;
- padding and special tokens are in neither region.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

from sumcircuit.errors import SumcircuitError

log = logging.getLogger(__name__)

Template = Literal["plain", "chat"]
TEMPLATES: tuple[str, ...] = ("plain", "chat")
_PLACEHOLDER = "\x00DOCUMENT\x00"
CHAT_INSTRUCTION = "Summarize the following article in one sentence.\n\n"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    """One tokenized example. ``summary_start == len(input_ids)`` for a prompt alone."""

    input_ids: list[int]
    doc_span: tuple[int, int]  # [start, end) of the document's tokens
    summary_start: int  # index of the first summary token
    truncated: bool = False  # document tokens were cut to fit

    @property
    def n_summary_tokens(self) -> int:
        return len(self.input_ids) - self.summary_start


@dataclass
class EncodeReport:
    """What happened while encoding a list of examples (never silent)."""

    n_in: int = 0
    truncated: int = 0
    skipped_summary_too_long: int = 0
    skipped_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, int]:
        return {
            "n_in": self.n_in,
            "truncated": self.truncated,
            "skipped_summary_too_long": self.skipped_summary_too_long,
        }


class SummaryTooLong(SumcircuitError):
    """The summary plus the prompt scaffolding does not fit in ``max_length``."""


@dataclass
class Prompter:
    """Encodes documents and summaries with one tokenizer and template."""

    tokenizer: PreTrainedTokenizerBase
    template: Template = "plain"
    max_length: int = 512

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise SumcircuitError(
                f"unknown template {self.template!r}; choose from {', '.join(TEMPLATES)}"
            )
        if self.template == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise SumcircuitError(
                "template 'chat' needs a tokenizer with a chat template; use 'plain'"
            )
        prefix, suffix = self._scaffold()
        self._prefix = self._ids(prefix)
        self._suffix = self._ids(suffix)
        bos = self.tokenizer.bos_token_id
        adds_bos = bos is not None and self.tokenizer("a").input_ids[:1] == [bos]
        if self.template == "plain" and adds_bos:
            self._prefix = [bos, *self._prefix]
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise SumcircuitError(
                "the tokenizer has no end-of-sequence token; summaries need one to stop"
            )
        self._eos = eos

    def _scaffold(self) -> tuple[str, str]:
        if self.template == "plain":
            return "", "\nTL;DR:"
        rendered = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": CHAT_INSTRUCTION + _PLACEHOLDER}],
            tokenize=False,
            add_generation_prompt=True,
        )
        prefix, suffix = rendered.split(_PLACEHOLDER)
        return prefix, suffix

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids if text else []

    def _summary_ids(self, summary: str) -> list[int]:
        text = " " + summary.strip() if self.template == "plain" else summary.strip()
        return [*self._ids(text), self._eos]

    def encode(self, document: str, summary: str | None = None, *, reserve: int = 0) -> Encoded:
        """Encode one example; ``summary=None`` gives the prompt alone (for generation),
        leaving ``reserve`` positions free for the generated tokens."""
        summary_ids = self._summary_ids(summary) if summary is not None else []
        fixed = len(self._prefix) + len(self._suffix) + len(summary_ids) + reserve
        budget = self.max_length - fixed
        if budget < 1:
            raise SummaryTooLong(
                f"the summary ({len(summary_ids)} tokens) and prompt do not fit in max_length="
                f"{self.max_length}; raise --max-length"
            )
        doc_ids = self._ids(document)
        truncated = len(doc_ids) > budget
        doc_ids = doc_ids[:budget]
        start = len(self._prefix)
        ids = [*self._prefix, *doc_ids, *self._suffix]
        return Encoded(
            input_ids=ids + summary_ids,
            doc_span=(start, start + len(doc_ids)),
            summary_start=len(ids),
            truncated=truncated,
        )

    def append_summary(self, prompt: Encoded, summary: str) -> Encoded:
        """``prompt`` (encoded with ``summary=None``) followed by ``summary``'s tokens and EOS.

        The teacher-forced counterpart of a generation prompt: the same document tokens (cut to
        leave the prompt's ``reserve``), so the summary is scored after exactly the prompt the
        model generated from. The summary is never cut, so the result is longer than
        ``max_length`` when the summary has more tokens than the reserve.
        """
        if prompt.n_summary_tokens:
            raise SumcircuitError(
                "append_summary takes a prompt encoded without a summary "
                "(Prompter.encode(document, None, reserve=...))"
            )
        return Encoded(
            input_ids=[*prompt.input_ids, *self._summary_ids(summary)],
            doc_span=prompt.doc_span,
            summary_start=prompt.summary_start,
            truncated=prompt.truncated,
        )

    def encode_many(
        self,
        pairs: list[tuple[str, str, str | None]],
        *,
        reserve: int = 0,
    ) -> tuple[list[Encoded], list[str], EncodeReport]:
        """Encode ``(id, document, summary)`` triples; returns encodings, their ids, and a report.

        Examples whose summary does not fit are skipped and counted; truncations are counted.
        """
        report = EncodeReport(n_in=len(pairs))
        out: list[Encoded] = []
        ids: list[str] = []
        for example_id, document, summary in pairs:
            try:
                enc = self.encode(document, summary, reserve=reserve)
            except SummaryTooLong:
                report.skipped_summary_too_long += 1
                report.skipped_ids.append(example_id)
                continue
            report.truncated += enc.truncated
            out.append(enc)
            ids.append(example_id)
        if report.truncated:
            log.info(
                "%d of %d documents truncated to fit max_length=%d",
                report.truncated,
                len(pairs),
                self.max_length,
            )
        if report.skipped_summary_too_long:
            log.warning(
                "%d examples skipped: summary longer than max_length=%d allows",
                report.skipped_summary_too_long,
                self.max_length,
            )
        return out, ids, report


@dataclass
class Batch:
    """A padded batch with region masks. All tensors are (B, T)."""

    input_ids: torch.Tensor  # long
    attention_mask: torch.Tensor  # long, 1 = real token
    doc_mask: torch.Tensor  # bool, query positions of document tokens
    summary_mask: torch.Tensor  # bool, query positions that predict a summary token
    labels: torch.Tensor  # long, next token at summary_mask positions, IGNORE_INDEX elsewhere

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{name: t.to(device) for name, t in vars(self).items()})

    def region(self, name: str) -> torch.Tensor:
        """The (B, T) bool mask of a region: ``document``, ``summary`` or ``all`` (doc ∪ summary)."""
        if name == "document":
            return self.doc_mask
        if name == "summary":
            return self.summary_mask
        if name == "all":
            return self.doc_mask | self.summary_mask
        raise SumcircuitError(f"unknown region {name!r}; choose from summary, document, all")


def collate(encoded: list[Encoded], pad_id: int, *, padding_side: str = "right") -> Batch:
    """Pad a list of encodings into a ``Batch`` (left padding for generation)."""
    if not encoded:
        raise SumcircuitError("cannot build a batch from zero examples")
    length = max(len(e.input_ids) for e in encoded)
    size = (len(encoded), length)
    input_ids = torch.full(size, pad_id, dtype=torch.long)
    attention = torch.zeros(size, dtype=torch.long)
    doc = torch.zeros(size, dtype=torch.bool)
    summ = torch.zeros(size, dtype=torch.bool)
    labels = torch.full(size, IGNORE_INDEX, dtype=torch.long)
    for row, enc in enumerate(encoded):
        n = len(enc.input_ids)
        off = length - n if padding_side == "left" else 0
        ids = torch.tensor(enc.input_ids, dtype=torch.long)
        input_ids[row, off : off + n] = ids
        attention[row, off : off + n] = 1
        doc[row, off + enc.doc_span[0] : off + enc.doc_span[1]] = True
        if enc.n_summary_tokens:
            first, last = off + enc.summary_start - 1, off + n - 1  # predicting positions
            summ[row, first:last] = True
            labels[row, first:last] = ids[enc.summary_start :]
    return Batch(input_ids, attention, doc, summ, labels)
