"""The real packaged default model (slow: dequantizes from GGUF on first use, ~30 s)."""

from __future__ import annotations

import re

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from sumcircuit.models.loader import load_model

    return load_model("smollm2-135m", attn_implementation="eager", device="cpu")


def test_shape_of_the_default_model(smollm2) -> None:
    ident = smollm2.identity
    assert (ident["layers"], ident["heads"], ident["kv_heads"], ident["hidden"]) == (30, 9, 3, 576)
    assert 134_000_000 < ident["n_params"] < 135_000_000
    assert len(ident["sha256"]) == 64


def test_attention_rows_sum_to_one(smollm2) -> None:
    ids = smollm2.tokenizer(
        "The quick brown fox jumps over the lazy dog.", return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        out = smollm2.model(input_ids=ids, output_attentions=True)
    assert len(out.attentions) == 30
    for attn in out.attentions:  # (1, 9, T, T), causal
        torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn[..., 0]), atol=1e-5, rtol=0)
        assert torch.triu(attn[0], diagonal=1).abs().max() == 0


def test_greedy_generation_continues_in_english(smollm2) -> None:
    tok = smollm2.tokenizer
    ids = tok(
        "The capital of France is Paris. The capital of Germany is", return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        out = smollm2.model.generate(
            ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id
        )
    text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    words = re.findall(r"[A-Za-z]+", text)
    common = {"the", "of", "is", "and", "capital", "city", "a", "in"}
    assert len(words) >= 4 and sum(w.lower() in common for w in words) >= 2, text
    assert "Berlin" in text, text  # the dequantized 4-bit weights still know this
