"""Independent cross-check against TransformerLens' ``run_with_cache`` on a tiny GPT-2.

TransformerLens 4 loads HF models through ``TransformerBridge`` (eager attention, its own
``hook_pattern``); maps and per-head entropies/KL computed from its cache must equal the diff's.
"""

import pytest
import torch
from test_diff_tiny import write_data
from transformers import AutoModelForCausalLM, AutoTokenizer

from sumcircuit.analysis.diff.capture import Rows, capture_attention, gather_rows, row_probs
from sumcircuit.analysis.diff.run import DiffConfig, run_diff
from sumcircuit.data.batching import prepare
from sumcircuit.metrics.attention import entropy, kl
from sumcircuit.models.archs import Arch
from sumcircuit.models.tiny import PEAKED_STD, save_tiny

bridge_module = pytest.importorskip(
    "transformer_lens.model_bridge", reason="TransformerLens (the interop extra) is not installed"
)


def _bridge(path):
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return bridge_module.TransformerBridge.boot_transformers(
        str(path), hf_model=hf, tokenizer=tokenizer, device="cpu"
    )


def _patterns(bridge, ids, n_layers):
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(
            ids, names_filter=lambda name: name.endswith("hook_pattern")
        )
    return [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(n_layers)]  # (1, H, T, T)


def test_maps_entropy_and_kl_match_transformerlens(tmp_path):
    base_dir = save_tiny("gpt2", tmp_path / "base", seed=0, n_layers=2, init_std=PEAKED_STD)
    ft_dir = save_tiny("gpt2", tmp_path / "ft", seed=1, n_layers=2, init_std=PEAKED_STD)
    data = write_data(tmp_path / "d.jsonl", 14)
    result = run_diff(DiffConfig(finetuned=str(ft_dir), base=str(base_dir), data=data, n_boot=100))
    bridges = [_bridge(base_dir), _bridge(ft_dir)]
    prepared = prepare(data, "validation", AutoTokenizer.from_pretrained(base_dir))

    # Attention maps: our capture (all rows) vs TransformerLens, on one document.
    model = AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation="sdpa").eval()
    arch = Arch.from_model(model)
    ids = torch.tensor([prepared.encoded[0].input_ids])
    ours = {}

    def sink(att):
        rows = Rows.from_mask(torch.ones(ids.shape, dtype=torch.bool))
        ours[att.layer] = row_probs(
            gather_rows(att.query, rows, 2), att.key, gather_rows(att.mask, rows, 2), att.scaling
        )

    with torch.inference_mode(), capture_attention(model, arch, sink):
        model(ids)
    theirs = _patterns(bridges[0], ids, arch.n_layers)
    for layer in range(arch.n_layers):
        assert torch.allclose(ours[layer], theirs[layer].float(), atol=1e-5)

    # Per-head region means over documents, from TransformerLens caches only.
    sums = {"entropy_base": 0.0, "entropy_ft": 0.0, "kl_base_ft": 0.0}
    for enc in prepared.encoded:
        ids = torch.tensor([enc.input_ids])
        rows = slice(enc.summary_start - 1, len(enc.input_ids) - 1)  # predict summary tokens
        p_all = _patterns(bridges[0], ids, arch.n_layers)
        q_all = _patterns(bridges[1], ids, arch.n_layers)
        p = torch.stack([x[0, :, rows] for x in p_all])  # (L, H, R, T)
        q = torch.stack([x[0, :, rows] for x in q_all])
        sums["entropy_base"] = sums["entropy_base"] + entropy(p).mean(-1)  # (L, H)
        sums["entropy_ft"] = sums["entropy_ft"] + entropy(q).mean(-1)
        sums["kl_base_ft"] = sums["kl_base_ft"] + kl(p, q).mean(-1)
    n = len(prepared.encoded)
    for column, total in sums.items():
        expected = (total / n).reshape(-1).numpy()
        assert result.heads[column].to_numpy() == pytest.approx(expected, rel=1e-4, abs=1e-6)
