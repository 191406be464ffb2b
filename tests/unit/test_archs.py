"""The architecture table: module names resolve, and head slices pick the right weights."""

from __future__ import annotations

import pytest
import torch

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.models.tiny import tiny_model

ARCHS = ["gpt2", "llama", "gemma3", "qwen2", "gpt_neox"]


@pytest.mark.parametrize("name", ARCHS)
def test_every_named_module_exists(name: str) -> None:
    model = tiny_model(name)
    arch = Arch.from_model(model)
    for layer in range(arch.n_layers):
        for which in "qkvo":
            model.get_submodule(arch.proj_name(layer, which))
        model.get_submodule(arch.mlp_name(layer))
        model.get_submodule(arch.mlp_out_name(layer))
        for target in arch.lora_targets([layer], ("q", "k", "v", "o", "mlp")):
            model.get_submodule(target)
    model.get_submodule(arch.spec.embed)
    model.get_submodule(arch.spec.final_norm)
    model.get_submodule(arch.spec.lm_head)


@pytest.mark.parametrize(
    ("name", "heads", "kv_heads"),
    [("gpt2", 4, 4), ("llama", 4, 2), ("gemma3", 4, 2), ("qwen2", 4, 1), ("gpt_neox", 4, 4)],
)
def test_sizes(name: str, heads: int, kv_heads: int) -> None:
    arch = Arch.from_model(tiny_model(name, n_kv_heads=kv_heads))
    assert (arch.n_layers, arch.n_heads, arch.n_kv_heads, arch.head_dim) == (4, heads, kv_heads, 8)


def _per_head_projection(model, arch: Arch, which: str, x: torch.Tensor) -> torch.Tensor:
    """The model's own per-head q/k/v of input x, shaped (T, n_heads_of_that_kind, head_dim),
    computed the way each architecture's attention module does it."""
    module = model.get_submodule(arch.proj_name(0, which))
    out = module(x)  # (T, features)
    d = arch.head_dim
    if arch.spec.layout == "fused_conv1d":  # GPT-2: split(hidden) into q, k, v
        out = out.split(arch.hidden, dim=-1)["qkv".index(which)]
    elif arch.spec.layout == "fused_per_head":  # NeoX: view(H, 3*d) then chunk
        out = out.view(-1, arch.n_heads, 3 * d).chunk(3, dim=-1)["qkv".index(which)]
        return out
    return out.view(x.shape[0], -1, d)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_head_weight_reproduces_each_heads_projection(name: str, which: str) -> None:
    model = tiny_model(name, seed=1)
    arch = Arch.from_model(model)
    x = torch.randn(5, arch.hidden)
    with torch.no_grad():
        reference = _per_head_projection(model, arch, which, x)  # (T, H or KV, d)
        module = model.get_submodule(arch.proj_name(0, which))
        bias = getattr(module, "bias", None)
        for head in range(arch.n_heads):
            w = arch.head_weight(model, 0, which, head)  # (d, in)
            got = x @ w.T
            if bias is not None:
                (sl,) = arch.head_slices(which, head)
                got = got + bias[sl]
            expected_index = (
                head if which == "q" or arch.n_kv_heads == arch.n_heads else arch.kv_group(head)
            )
            torch.testing.assert_close(got, reference[:, expected_index])


@pytest.mark.parametrize("name", ARCHS)
def test_o_head_columns_are_the_heads_input_slice(name: str) -> None:
    model = tiny_model(name, seed=2)
    arch = Arch.from_model(model)
    o = model.get_submodule(arch.proj_name(0, "o"))
    z = torch.randn(3, arch.n_heads * arch.head_dim)
    with torch.no_grad():
        full = o(z) - (o.bias if getattr(o, "bias", None) is not None else 0)
        parts = sum(
            z[:, arch.head_slices("o", h)[0]] @ arch.head_weight(model, 0, "o", h).T
            for h in range(arch.n_heads)
        )
    torch.testing.assert_close(parts, full)


def test_gqa_group_mapping() -> None:
    arch = Arch.from_model(tiny_model("llama", n_heads=4, n_kv_heads=2))
    assert [arch.kv_group(h) for h in range(4)] == [0, 0, 1, 1]


def test_out_of_range_and_unknown_targets_are_clear() -> None:
    arch = Arch.from_model(tiny_model("llama"))
    with pytest.raises(SumcircuitError, match="layer 7 is out of range.*0..3"):
        arch.block_name(7)
    with pytest.raises(SumcircuitError, match="head 9 is out of range"):
        arch.head_slices("q", 9)
    with pytest.raises(SumcircuitError, match="unknown LoRA target"):
        arch.lora_targets([0], ("q", "ffn"))


def test_lora_targets_fused_listed_once() -> None:
    arch = Arch.from_model(tiny_model("gpt2"))
    assert arch.lora_targets([1], ("q", "k", "v", "o")) == [
        "transformer.h.1.attn.c_attn",
        "transformer.h.1.attn.c_proj",
    ]


def test_unsupported_architecture_names_supported_ones() -> None:
    from transformers import BertConfig, BertLMHeadModel

    model = BertLMHeadModel(
        BertConfig(
            num_hidden_layers=1,
            hidden_size=16,
            num_attention_heads=2,
            intermediate_size=16,
            is_decoder=True,
        )
    )
    with pytest.raises(SumcircuitError, match="not supported; supported: .*llama"):
        Arch.from_model(model)
