"""The one table of per-architecture facts.

Hooks, weight differences, patching and LoRA all read module names and head layouts from here;
no other module branches on the architecture. Two shapes of attention matter:

- ``separate``: Llama / Qwen2 / Gemma3 — ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj`` as
  ``nn.Linear`` (weight ``(out, in)``), with grouped-query attention: fewer KV heads than query
  heads; query head ``h`` reads KV head ``h // (n_heads // n_kv_heads)``.
- ``fused_conv1d``: GPT-2 — one ``Conv1D`` ``c_attn`` (weight ``(in, out)``) whose output is
  ``[q (all heads) | k (all heads) | v (all heads)]``, and ``c_proj`` as the output projection.
- ``fused_per_head``: GPT-NeoX / Pythia — one ``nn.Linear`` ``query_key_value`` whose output is
  laid out per head as ``[q_h | k_h | v_h]`` for h = 0..H-1.

In every layout the output projection's *input* is the concatenation of the per-head attention
outputs ``[head_0 | head_1 | ...]`` (each ``head_dim`` wide): that is where per-head outputs
are captured and patched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from sumcircuit.errors import SumcircuitError

QKVLayout = Literal["separate", "fused_conv1d", "fused_per_head"]
Projection = Literal["q", "k", "v", "o"]


@dataclass(frozen=True)
class ArchSpec:
    """Where things live in one family of decoder-only models (names relative to the model)."""

    model_type: str
    blocks: str  # dotted path of the ModuleList of decoder blocks
    attn: str  # attention module, relative to a block
    mlp: str  # MLP module, relative to a block
    embed: str  # token embedding, relative to the model
    final_norm: str  # final norm before the LM head, relative to the model
    lm_head: str
    layout: QKVLayout
    q: str  # projection names relative to the attention module (q/k/v equal when fused)
    k: str
    v: str
    o: str
    mlp_linears: tuple[str, ...]  # the MLP's linear layers, relative to the MLP module
    weight_in_out: bool = False  # Conv1D stores (in, out); nn.Linear stores (out, in)
    # the module whose output is the MLP's write to the residual stream, relative to a block:
    # the norm after the MLP where there is one (Gemma3); "" for the MLP module itself
    mlp_out: str = ""


# Llama, Qwen2 and Gemma3 share one layout: separate projections, grouped-query KV heads.
_LLAMA_LIKE = ArchSpec(
    model_type="llama",
    blocks="model.layers",
    attn="self_attn",
    mlp="mlp",
    embed="model.embed_tokens",
    final_norm="model.norm",
    lm_head="lm_head",
    layout="separate",
    q="q_proj",
    k="k_proj",
    v="v_proj",
    o="o_proj",
    mlp_linears=("gate_proj", "up_proj", "down_proj"),
)

ARCHS: dict[str, ArchSpec] = {
    spec.model_type: spec
    for spec in (
        _LLAMA_LIKE,
        replace(_LLAMA_LIKE, model_type="qwen2"),
        replace(_LLAMA_LIKE, model_type="gemma3_text", mlp_out="post_feedforward_layernorm"),
        ArchSpec(
            model_type="gpt2",
            blocks="transformer.h",
            attn="attn",
            mlp="mlp",
            embed="transformer.wte",
            final_norm="transformer.ln_f",
            lm_head="lm_head",
            layout="fused_conv1d",
            q="c_attn",
            k="c_attn",
            v="c_attn",
            o="c_proj",
            mlp_linears=("c_fc", "c_proj"),
            weight_in_out=True,
        ),
        ArchSpec(
            model_type="gpt_neox",
            blocks="gpt_neox.layers",
            attn="attention",
            mlp="mlp",
            embed="gpt_neox.embed_in",
            final_norm="gpt_neox.final_layer_norm",
            lm_head="lm_head",
            layout="fused_per_head",
            q="query_key_value",
            k="query_key_value",
            v="query_key_value",
            o="dense",
            mlp_linears=("dense_h_to_4h", "dense_4h_to_h"),
        ),
    )
}
# Gemma3 loaded from GGUF reports "gemma3"; its text-only causal LM uses the same layout.
ARCHS["gemma3"] = ARCHS["gemma3_text"]


@dataclass(frozen=True)
class Arch:
    """An ``ArchSpec`` bound to one model's sizes, with the module look-ups everyone needs."""

    spec: ArchSpec
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden: int

    @classmethod
    def from_model(cls, model: nn.Module) -> Arch:
        config = getattr(model.config, "text_config", None) or model.config
        model_type = config.model_type
        if model_type not in ARCHS:
            known = ", ".join(sorted(ARCHS))
            raise SumcircuitError(
                f"architecture {model_type!r} is not supported; supported: {known} "
                "(add a row to sumcircuit/models/archs.py to support it)"
            )
        n_heads = _first_attr(config, "num_attention_heads", "n_head")
        hidden = _first_attr(config, "hidden_size", "n_embd")
        head_dim = getattr(config, "head_dim", None) or hidden // n_heads
        return cls(
            spec=ARCHS[model_type],
            n_layers=_first_attr(config, "num_hidden_layers", "n_layer"),
            n_heads=n_heads,
            n_kv_heads=getattr(config, "num_key_value_heads", None) or n_heads,
            head_dim=head_dim,
            hidden=hidden,
        )

    # -- module look-ups -------------------------------------------------------------------
    def block_name(self, layer: int) -> str:
        self.check_layer(layer)
        return f"{self.spec.blocks}.{layer}"

    def attn_name(self, layer: int) -> str:
        return f"{self.block_name(layer)}.{self.spec.attn}"

    def mlp_name(self, layer: int) -> str:
        return f"{self.block_name(layer)}.{self.spec.mlp}"

    def mlp_out_name(self, layer: int) -> str:
        """The module whose output is the MLP's write to the residual stream (after any
        post-MLP norm)."""
        if not self.spec.mlp_out:
            return self.mlp_name(layer)
        return f"{self.block_name(layer)}.{self.spec.mlp_out}"

    def proj_name(self, layer: int, which: Projection) -> str:
        return f"{self.attn_name(layer)}.{getattr(self.spec, which)}"

    def mlp_linear_names(self, layer: int) -> list[str]:
        return [f"{self.mlp_name(layer)}.{name}" for name in self.spec.mlp_linears]

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        return model.get_submodule(self.spec.blocks)

    # -- LoRA targets ------------------------------------------------------------------------
    def lora_targets(self, layers: list[int], targets: tuple[str, ...]) -> list[str]:
        """Full module names to adapt for ``targets`` ⊆ {q, k, v, o, mlp} on ``layers``.

        Fused q/k/v (GPT-2, NeoX) map to the one fused module, listed once per layer.
        """
        unknown = set(targets) - {"q", "k", "v", "o", "mlp"}
        if unknown:
            raise SumcircuitError(
                f"unknown LoRA target(s) {sorted(unknown)}; choose from q, k, v, o, mlp"
            )
        names: list[str] = []
        for layer in layers:
            for target in targets:
                new = (
                    self.mlp_linear_names(layer)
                    if target == "mlp"
                    else [self.proj_name(layer, target)]
                )
                names.extend(n for n in new if n not in names)
        return names

    # -- head slices of projection weights ---------------------------------------------------
    def head_slices(self, which: Projection, head: int) -> list[slice]:
        """Slices of the projection's head axis that belong to query head ``head``.

        For q/k/v the axis is the projection's output features; for o it is the output
        projection's input features. k/v of grouped-query models return the slice of the KV head
        that ``head`` reads (shared by ``n_heads // n_kv_heads`` query heads).
        """
        self.check_head(head)
        d = self.head_dim
        if which == "o":
            return [slice(head * d, (head + 1) * d)]
        index = "qkv".index(which)
        if self.spec.layout == "fused_per_head":
            start = head * 3 * d + index * d
            return [slice(start, start + d)]
        kv_head = head // (self.n_heads // self.n_kv_heads)
        if which == "q":
            start = head * d
        else:
            start = kv_head * d
        if self.spec.layout == "fused_conv1d":
            start += index * self.n_heads * d  # [q | k | v] blocks, each n_heads*d wide
        return [slice(start, start + d)]

    def head_weight(
        self, model: nn.Module, layer: int, which: Projection, head: int
    ) -> torch.Tensor:
        """The rows (or columns) of one projection's weight that belong to ``head``.

        Returned as ``(head_dim, in)`` for q/k/v and ``(out, head_dim)`` for o, whatever the
        storage convention (Conv1D's ``(in, out)`` is transposed).
        """
        weight = model.get_submodule(self.proj_name(layer, which)).weight
        if self.spec.weight_in_out:
            weight = weight.t()  # Conv1D → (out, in)
        (sl,) = self.head_slices(which, head)
        return weight[:, sl] if which == "o" else weight[sl, :]

    def kv_group(self, head: int) -> int:
        """The KV head read by query head ``head``."""
        return head // (self.n_heads // self.n_kv_heads)

    # -- validation -----------------------------------------------------------------------
    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise SumcircuitError(
                f"layer {layer} is out of range: this model has layers 0..{self.n_layers - 1}"
            )

    def check_head(self, head: int) -> None:
        if not 0 <= head < self.n_heads:
            raise SumcircuitError(
                f"head {head} is out of range: this model has heads 0..{self.n_heads - 1} per layer"
            )

    def describe(self) -> dict[str, int | str]:
        return {
            "model_type": self.spec.model_type,
            "layers": self.n_layers,
            "heads": self.n_heads,
            "kv_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "hidden": self.hidden,
        }


def _first_attr(config: object, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise SumcircuitError(f"model config lacks all of {names}; is this a decoder-only LM?")
