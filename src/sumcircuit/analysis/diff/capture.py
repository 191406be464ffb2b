"""Attention probabilities at selected query rows, captured inside the attention computation.

Instead of ``output_attentions=True`` (which needs the slow eager path and keeps every layer's
full ``(B, H, T, T)`` map alive until the forward ends), the model runs with a registered
attention function, ``sumcircuit_capture``, that

1. computes the layer's output with PyTorch SDPA, exactly as ``attn_implementation="sdpa"``;
2. hands the layer's query, key and boolean mask to a *sink* (a callable bound to this model
   for the duration of :func:`capture_attention`), which typically keeps only the query rows of
   the analysed region and calls :func:`row_probs` on them.

Nothing else is kept: a sink decides what outlives the layer. The mask function registered with
the same name is transformers' SDPA mask with the causal shortcut disabled, so every layer
receives an explicit ``(B, 1, T, T)`` boolean mask (True = may attend) that already encodes
causality, padding and sliding windows.

The two registry entries are static (like a decorator registry); which sink a call reaches is
per-model state installed and removed by the :func:`capture_attention` context manager.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch

__all__ = ["CAPTURE", "LayerAttention", "Rows", "capture_attention", "gather_rows", "row_probs"]

CAPTURE = "sumcircuit_capture"


@dataclass(frozen=True)
class LayerAttention:
    """What a sink receives for one layer: query (B, H, T, d), key (B, Hkv, T, d), the boolean
    mask (B or 1, 1, T, T) with True where query i may attend to key j, and the logit scale."""

    layer: int
    query: Tensor
    key: Tensor
    mask: Tensor
    scaling: float


Sink = Callable[[LayerAttention], None]

# id(attention module) -> (layer, sink), only while a capture_attention block is open.
_ACTIVE: dict[int, tuple[int, Sink]] = {}


def _capture_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[Tensor, None]:
    if kwargs.get("softcap") is not None:
        raise SumcircuitError(
            "attention logit soft-capping is not supported by the attention capture; analyse "
            "this model with a softcap-free configuration"
        )
    scale = query.shape[-1] ** -0.5 if scaling is None else float(scaling)
    entry = _ACTIVE.get(id(module))
    if entry is not None:
        layer, sink = entry
        if attention_mask is None or attention_mask.dtype != torch.bool:
            raise SumcircuitError(
                "the attention capture expected an explicit boolean mask; the model built "
                f"{'none' if attention_mask is None else attention_mask.dtype} instead"
            )
        sink(LayerAttention(layer, query, key, attention_mask, scale))
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, scaling=scale, dropout=dropout, **kwargs
    )


def _capture_mask(*args, **kwargs):
    kwargs["allow_is_causal_skip"] = False  # always materialise the mask the sink needs
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(CAPTURE, _capture_attention)
AttentionMaskInterface.register(CAPTURE, _capture_mask)


@contextmanager
def capture_attention(model: nn.Module, arch: Arch, sink: Sink) -> Iterator[None]:
    """Route every attention layer of ``model`` through ``sink`` for the block's duration.

    The model's attention implementation is switched to ``sumcircuit_capture`` and restored on
    exit (also on error). Raises a clear error if the architecture does not dispatch attention
    through transformers' attention interface (then no maps could be captured).
    """
    modules = {
        id(model.get_submodule(arch.attn_name(layer))): layer for layer in range(arch.n_layers)
    }
    previous = model.config._attn_implementation
    try:
        model.set_attn_implementation(CAPTURE)
    except (ValueError, ImportError) as err:
        raise SumcircuitError(
            f"this model's attention cannot be routed through sumcircuit's capture ({err}); it "
            "must use transformers' AttentionInterface (transformers >= 4.48 models do)"
        ) from err
    for key, layer in modules.items():
        _ACTIVE[key] = (layer, sink)
    try:
        yield
    finally:
        for key in modules:
            _ACTIVE.pop(key, None)
        model.set_attn_implementation(previous)


@dataclass(frozen=True)
class Rows:
    """The query rows of a region, gathered per document into a padded (B, R) index.

    ``index[b, r]`` is the position of the r-th region token of document b (0 where
    ``valid[b, r]`` is False); R is the largest region size in the batch.
    """

    index: Tensor  # (B, R) int64
    valid: Tensor  # (B, R) bool

    @classmethod
    def from_mask(cls, region: Tensor) -> Rows:
        """region: (B, T) bool → rows in ascending position order."""
        region = region.to(torch.bool)
        counts = region.sum(dim=1)  # (B,)
        width = int(counts.max().item()) if region.numel() else 0
        order = torch.argsort((~region).to(torch.int8), dim=1, stable=True)  # region first
        index = order[:, :width]  # (B, R)
        valid = torch.arange(width, device=region.device)[None, :] < counts[:, None]
        return cls(torch.where(valid, index, torch.zeros_like(index)), valid)

    @property
    def width(self) -> int:
        return self.index.shape[1]


def gather_rows(x: Tensor, rows: Rows, dim: int) -> Tensor:
    """Select ``rows`` along ``dim`` of x, whose dim 0 is the batch: (B, ..., T, ...) →
    (B, ..., R, ...). A batch-1 x (a broadcast mask) is expanded to the batch first."""
    B, R = rows.index.shape
    if x.shape[0] == 1 and B > 1:
        x = x.expand(B, *x.shape[1:])
    shape = [1] * x.dim()
    shape[0], shape[dim] = B, R
    index = rows.index.to(x.device).view(shape)
    size = list(x.shape)
    size[dim] = R
    return torch.gather(x, dim, index.expand(size))


def row_probs(query_rows: Tensor, key: Tensor, mask_rows: Tensor, scaling: float) -> Tensor:
    """Attention probabilities of selected query rows, in float32.

    query_rows: (B, H, R, d); key: (B, Hkv, T, d) with H a multiple of Hkv (query head h reads
    KV head h // (H / Hkv)); mask_rows: (B, 1, R, T) bool, True where the row may attend.
    Returns softmax_j(scaling · q_r · k_j over allowed j) → (B, H, R, T), exactly 0 at masked
    keys. Grouped-query heads are matched by reshaping the queries, never by copying keys.
    """
    B, H, R, d = query_rows.shape
    Hkv, T = key.shape[1], key.shape[2]
    if H % Hkv:
        raise SumcircuitError(f"{H} query heads cannot share {Hkv} KV heads evenly")
    q = query_rows.float().reshape(B, Hkv, (H // Hkv) * R, d)  # heads g*rep..g*rep+rep-1 → g
    scores = (q @ key.float().transpose(-1, -2)) * scaling  # (B, Hkv, rep*R, T)
    scores = scores.view(B, H, R, T)
    scores = scores.masked_fill(~mask_rows, float("-inf"))
    return torch.softmax(scores, dim=-1)  # (B, H, R, T)
