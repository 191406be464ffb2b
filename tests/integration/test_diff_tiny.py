"""The diff stage end to end on tiny random models (GPT-2, Llama, Gemma3 shapes)."""

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from sumcircuit.analysis.diff.run import DiffConfig, DiffResult, run_diff
from sumcircuit.analysis.diff.stats import HEAD_COLUMNS, LAYER_COLUMNS
from sumcircuit.data.batching import prepare
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.models.loader import LoadedModel
from sumcircuit.models.tiny import gpt2_tokenizer, tiny_model

WORDS = (
    "the council said on monday that new rules for local bus services would start next year "
    "after a long review of fares routes and timetables across the region police officers "
    "reported a rise in thefts while schools opened late because of heavy snow"
).split()


def write_data(path, n, seed=0, period=None):
    """n documents of random words; with ``period`` document i repeats document i % period."""
    with open(path, "w") as fh:
        for i in range(n):
            j = i % (period or n)
            rng = np.random.default_rng([seed, j])
            doc = " ".join(rng.choice(WORDS, size=12 + 5 * (j % 5)))
            summ = " ".join(rng.choice(WORDS, size=3 + j % 4))
            fh.write(
                json.dumps({"id": f"d{i}", "document": doc, "summary": summ, "split": "validation"})
                + "\n"
            )
    return str(path)


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


def loaded(model, tokenizer, name):
    return LoadedModel(model, tokenizer, Arch.from_model(model), {"name": name})


def pair(arch, tokenizer, *, same=False, **sizes):
    base = tiny_model(arch, seed=0, attn_implementation="sdpa", **sizes)
    ft = (
        copy.deepcopy(base)
        if same
        else tiny_model(arch, seed=1, attn_implementation="sdpa", **sizes)
    )
    return loaded(base, tokenizer, "base"), loaded(ft, tokenizer, "ft")


def config(data, **kw):
    return DiffConfig(finetuned="ft", base="base", data=data, n_boot=200, **kw)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
def test_diff_of_a_model_with_itself_is_exactly_zero(arch, tokenizer, tmp_path):
    data = write_data(tmp_path / "d.jsonl", 6)
    base, ft = pair(arch, tokenizer, same=True)
    result = run_diff(config(data, batch_size=4), base=base, finetuned=ft)
    heads = result.heads
    assert list(heads.columns) == HEAD_COLUMNS and list(result.layers.columns) == LAYER_COLUMNS
    assert len(heads) == base.arch.n_layers * base.arch.n_heads
    for column in ("kl_base_ft", "kl_ft_base", "js", "delta_entropy", "weight_change"):
        assert (heads[column] == 0.0).all(), column
    assert (heads["entropy_base"] > 0).all()
    assert (heads["p_value"] == 1.0).all()
    assert result.summary["frac_heads_entropy_decreased"] == 0.0
    assert result.layers["cosine"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert result.layers["cka"].to_numpy() == pytest.approx(1.0, abs=1e-4)
    assert (result.layers["actmag_rel_change"] == 0.0).all()


def _scale_queries(model, arch, factors):
    """Multiply head h's query projection (weights and bias) of layer l by factors[l][h]."""
    d = arch.head_dim
    with torch.no_grad():
        for layer, per_head in enumerate(factors):
            proj = model.get_submodule(arch.proj_name(layer, "q"))
            for head, c in enumerate(per_head):
                cols = slice(head * d, (head + 1) * d)  # q block comes first in GPT-2's c_attn
                if arch.spec.weight_in_out:
                    proj.weight[:, cols] *= c
                else:
                    proj.weight[cols, :] *= c
                if proj.bias is not None:
                    proj.bias[cols] *= c


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_each_head_lands_on_its_own_row(arch, tokenizer, tmp_path):
    """Heads get known attention sharpness: query scale 0 (uniform) < 1 < 4 < 16 (peaked);
    layer 1 reverses the order. Entropy must fall along each layer's heads in that order, and
    the uniform head's entropy must equal the hand-computed mean ln(#keys)."""
    data = write_data(tmp_path / "d.jsonl", 14)
    base, ft = pair(arch, tokenizer, n_layers=2, n_heads=4, n_kv_heads=2, hidden=64)
    factors = [[0.0, 1.0, 4.0, 16.0], [16.0, 4.0, 1.0, 0.0]]
    for model in (base.model, ft.model):
        _scale_queries(model, base.arch, factors)
    result = run_diff(config(data), base=base, finetuned=ft)
    grid = result.heads.pivot(index="layer", columns="head", values="entropy_base").to_numpy()
    assert np.all(np.diff(grid[0]) < 0) and np.all(np.diff(grid[1]) > 0)
    prepared = prepare(data, "validation", tokenizer)
    per_doc = [
        np.mean([math.log(i + 1) for i in range(e.summary_start - 1, len(e.input_ids) - 1)])
        for e in prepared.encoded
    ]
    uniform = np.mean(per_doc)
    assert grid[0, 0] == pytest.approx(uniform, abs=1e-5)
    assert grid[1, 3] == pytest.approx(uniform, abs=1e-5)
    norm = result.heads.set_index(["layer", "head"])["norm_entropy_ft"]
    assert norm[(0, 0)] == pytest.approx(1.0, abs=1e-6)
    assert norm[(0, 0)] > norm[(0, 1)] > norm[(0, 2)] > norm[(0, 3)]


def test_memory_does_not_grow_with_documents(tokenizer, tmp_path):
    base, ft = pair("llama", tokenizer, n_layers=2)
    memory = {}
    for n in (8, 32):
        data = write_data(tmp_path / f"d{n}.jsonl", n, period=1)  # identical batches, more of them
        memory[n] = run_diff(config(data, batch_size=4), base=base, finetuned=ft).summary["memory"]
    assert memory[8]["accumulator_fixed_bytes"] == memory[32]["accumulator_fixed_bytes"] > 0
    assert memory[8]["peak_batch_store_bytes"] == memory[32]["peak_batch_store_bytes"] > 0
    assert memory[32]["accumulator_bytes"] > memory[8]["accumulator_bytes"]  # per-doc arrays


def test_result_round_trips_and_per_doc_recomputes_aggregates(tokenizer, tmp_path):
    data = write_data(tmp_path / "d.jsonl", 14)
    base, ft = pair("gemma3", tokenizer)
    result = run_diff(config(data, per_doc=True, region="all"), base=base, finetuned=ft)
    out = result.save(tmp_path / "diff")
    loaded_back = DiffResult.load(out)
    pd.testing.assert_frame_equal(loaded_back.heads, result.heads, check_exact=False, rtol=1e-12)
    again = DiffResult.from_dict(json.loads(json.dumps(result.to_dict(), default=float)))
    assert again.summary["layers_ranked"] == result.summary["layers_ranked"]
    per_doc = loaded_back.per_doc
    means = per_doc.groupby(["layer", "head"])[["entropy_base", "kl_base_ft"]].mean()
    assert means["kl_base_ft"].to_numpy() == pytest.approx(result.heads["kl_base_ft"].to_numpy())
    assert means["entropy_base"].to_numpy() == pytest.approx(
        result.heads["entropy_base"].to_numpy()
    )
    ranked = result.layers.sort_values("kl_mean", ascending=False)["layer"].tolist()
    assert result.summary["layers_ranked"] == ranked
    by_doc = loaded_back.layer_scores_per_doc("kl")  # the values the claims' bootstrap resamples
    assert by_doc.shape == (result.summary["n_docs"], len(result.layers))
    assert by_doc.mean(axis=0) == pytest.approx(result.layers["kl_mean"].to_numpy())
    for measure, column in (("entropy", "delta_entropy_mean"), ("js", "js_mean")):
        values, none = loaded_back.layer_parts_per_doc(measure)
        assert none is None and values.index.is_monotonic_increasing
        assert values.mean(axis=0).to_numpy() == pytest.approx(result.layers[column].to_numpy())
    # ActMag's relative change is a ratio of token-weighted sums, kept per document
    num, den = loaded_back.layer_parts_per_doc("actmag")
    assert (num.sum() / den.sum()).to_numpy() == pytest.approx(
        result.layers["actmag_rel_change"].to_numpy(), rel=1e-9
    )
    weights = loaded_back.head_weights
    assert set(weights.columns) >= {"layer", "head", "kv_head", "q", "k", "v", "o"}
    assert weights["kv_head"].tolist()[:4] == [0, 0, 1, 1]  # 4 heads share 2 KV heads


@pytest.mark.parametrize(
    "other, message",
    [
        (lambda: tiny_model("gpt2", attn_implementation="sdpa"), "architecture"),
        (lambda: tiny_model("llama", attn_implementation="sdpa", n_layers=2), "architecture"),
        (lambda: _resized(tiny_model("llama", attn_implementation="sdpa")), "vocabular"),
    ],
)
def test_incompatible_models_fail_before_any_work(other, message, tokenizer, tmp_path):
    base = loaded(tiny_model("llama", attn_implementation="sdpa"), tokenizer, "base")
    with pytest.raises(SumcircuitError, match=message):
        run_diff(
            config(str(tmp_path / "missing.jsonl")),
            base=base,
            finetuned=loaded(other(), tokenizer, "ft"),
        )


def _resized(model):
    model.resize_token_embeddings(model.config.vocab_size + 8)
    return model


def test_attention_that_cannot_be_captured_is_a_clear_error(tokenizer, tmp_path, monkeypatch):
    data = write_data(tmp_path / "d.jsonl", 4)
    base, ft = pair("llama", tokenizer)

    def refuse(name, **kwargs):
        raise ValueError(f"{name} is not supported")

    monkeypatch.setattr(base.model, "set_attn_implementation", refuse)
    with pytest.raises(SumcircuitError, match="attention cannot be routed"):
        run_diff(config(data), base=base, finetuned=ft)
