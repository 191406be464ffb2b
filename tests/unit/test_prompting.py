"""Prompt encoding: exact region boundaries, document truncation, never the summary."""

from __future__ import annotations

import pytest

from sumcircuit.data.prompting import IGNORE_INDEX, Prompter, SummaryTooLong, collate
from sumcircuit.errors import SumcircuitError


def test_layout_and_regions(gpt2_tok) -> None:
    p = Prompter(gpt2_tok, max_length=64)
    enc = p.encode("The cat sat.", "A cat.")
    doc_ids = gpt2_tok("The cat sat.", add_special_tokens=False).input_ids
    sep_ids = gpt2_tok("\nTL;DR:", add_special_tokens=False).input_ids
    sum_ids = gpt2_tok(" A cat.", add_special_tokens=False).input_ids
    assert enc.input_ids == doc_ids + sep_ids + sum_ids + [gpt2_tok.eos_token_id]
    assert enc.doc_span == (0, len(doc_ids))
    assert enc.summary_start == len(doc_ids) + len(sep_ids)
    assert enc.n_summary_tokens == len(sum_ids) + 1
    assert gpt2_tok.decode(enc.input_ids) == "The cat sat.\nTL;DR: A cat.<|endoftext|>"


def test_truncates_document_never_summary(gpt2_tok) -> None:
    p = Prompter(gpt2_tok, max_length=24)
    summary = "A short summary of the text."
    enc = p.encode("word " * 100, summary)
    assert len(enc.input_ids) == 24
    assert enc.truncated
    assert gpt2_tok.decode(enc.input_ids[enc.summary_start :]) == " " + summary + "<|endoftext|>"


def test_summary_too_long_is_skipped_and_counted(gpt2_tok) -> None:
    p = Prompter(gpt2_tok, max_length=12)
    with pytest.raises(SummaryTooLong, match="raise --max-length"):
        p.encode("doc", "a summary that is far too long to fit in twelve tokens at all")
    encoded, ids, report = p.encode_many(
        [
            ("a", "doc one", "short."),
            ("b", "doc", "a summary that is far too long to fit in twelve tokens"),
        ]
    )
    assert ids == ["a"] and len(encoded) == 1
    assert report.to_dict() == {"n_in": 2, "truncated": 0, "skipped_summary_too_long": 1}


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_masks_and_labels(gpt2_tok, side: str) -> None:
    p = Prompter(gpt2_tok, max_length=64)
    a, b = (
        p.encode("One two three four five six.", "Six."),
        p.encode("One.", "A longer summary here."),
    )
    batch = collate([a, b], gpt2_tok.pad_token_id, padding_side=side)
    for row, enc in enumerate((a, b)):
        n, length = len(enc.input_ids), batch.input_ids.shape[1]
        off = length - n if side == "left" else 0
        assert batch.attention_mask[row].sum() == n
        assert batch.doc_mask[row].nonzero().flatten().tolist() == list(
            range(off + enc.doc_span[0], off + enc.doc_span[1])
        )
        predicting = list(range(off + enc.summary_start - 1, off + n - 1))
        assert batch.summary_mask[row].nonzero().flatten().tolist() == predicting
        assert batch.labels[row, predicting].tolist() == enc.input_ids[enc.summary_start :]
        assert (batch.labels[row][~batch.summary_mask[row]] == IGNORE_INDEX).all()
        # padding is in no region
        assert not (batch.doc_mask[row] | batch.summary_mask[row])[
            batch.attention_mask[row] == 0
        ].any()
    assert batch.region("all").equal(batch.doc_mask | batch.summary_mask)
    with pytest.raises(SumcircuitError, match="unknown region"):
        batch.region("middle")


def test_prompt_only_reserves_room_for_generation(gpt2_tok) -> None:
    p = Prompter(gpt2_tok, max_length=30)
    enc = p.encode("word " * 100, None, reserve=10)
    assert len(enc.input_ids) == 20 and enc.n_summary_tokens == 0
    batch = collate([enc], gpt2_tok.pad_token_id, padding_side="left")
    assert not batch.summary_mask.any() and (batch.labels == IGNORE_INDEX).all()


def test_chat_template_needs_one(gpt2_tok) -> None:
    with pytest.raises(SumcircuitError, match="chat template"):
        Prompter(gpt2_tok, template="chat")
    with pytest.raises(SumcircuitError, match="unknown template"):
        Prompter(gpt2_tok, template="fancy")


def test_chat_template_regions(gpt2_tok) -> None:
    gpt2_tok.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    try:
        p = Prompter(gpt2_tok, template="chat", max_length=64)
        enc = p.encode("The cat sat.", "A cat.")
    finally:
        gpt2_tok.chat_template = None
    doc = gpt2_tok.decode(enc.input_ids[enc.doc_span[0] : enc.doc_span[1]])
    assert doc == "The cat sat."
    assert gpt2_tok.decode(enc.input_ids[enc.summary_start :]) == "A cat.<|endoftext|>"
