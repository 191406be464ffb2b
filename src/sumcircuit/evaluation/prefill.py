"""The one prefill of each evaluated prompt, and the batch cache that greedy generation starts from.

Evaluation encodes every prompt once (:func:`prefix_cache`): the prompt *but its last token*, run
alone. That cache serves two readers:

- greedy generation starts from a copy of it: :func:`batch_cache` copies every row's keys and
  values, left-padded, into one preallocated batch cache, and ``model.generate`` then runs from
  the last prompt token;
- the reference log-likelihood continues another such copy, of a few rows, with each row's last
  prompt token and reference summary
  (:func:`sumcircuit.evaluation.loglik.batch_continuation_loglik`).

Why a row alone and not the padded batch: ``generate`` prefills the left-padded batch, which on
XSum lengths (85-464 tokens in a batch of 16) is 1.7x the work of the prompts alone, and in a
batch the prefill is about half the time of a one-sentence summary. A row alone gets the same
positions (0..n-1) and keys as its unpadded slots in the batch, and the padded slots are masked,
so the summaries do not change (tests compare with one-at-a-time and plain ``generate``). The
batch cache is static (written in place): the default dynamic cache concatenates every layer's
keys and values at each new token, which was 2/3 of a decode step at batch 16.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, StaticCache

__all__ = ["batch_cache", "prefix_cache"]


def prefix_cache(model: torch.nn.Module, ids: list[int]) -> DynamicCache | None:
    """The KV cache of ``ids`` but its last token, run alone (batch 1, positions 0..n-2); None
    for a prompt of one token (nothing to cache: its readers start from position 0)."""
    if len(ids) < 2:
        return None
    device = next(model.parameters()).device
    return model(
        input_ids=torch.tensor([ids[:-1]], device=device), use_cache=True, logits_to_keep=1
    ).cache


def batch_cache(
    model: torch.nn.Module,
    rows: list[list[int]],
    caches: list[DynamicCache | None],
    max_new_tokens: int,
) -> StaticCache | None:
    """One static cache for the left-padded batch of prompts ``rows``, their :func:`prefix_cache`
    ``caches`` copied in (the caches themselves stay untouched), with room for
    ``max_new_tokens``.

    Sliding-window layers keep a row's last ``window - 1`` keys; padding every row to the batch
    width before ``update`` gives them the layout and length count of a padded prefill. Returns
    None (generation then prefills the batch itself) when a row has no cache (a one-token
    prompt) or a cache layer is of another kind.
    """
    if any(cache is None for cache in caches):
        return None
    per_row = [cache.layers for cache in caches]  # type: ignore[union-attr]
    width = max(len(r) for r in rows) - 1
    merged = StaticCache(config=model.config, max_cache_len=width + 1 + max_new_tokens)
    for layer in range(len(per_row[0])):
        keys, values = [], []
        for r, layers in zip(rows, per_row, strict=True):
            k, v = layers[layer].keys, layers[layer].values  # (1, kv_heads, kept, head_dim)
            window = getattr(layers[layer], "sliding_window", None)  # keeps the last window-1
            if k.shape[2] != min(len(r) - 1, window - 1 if window else len(r)):
                return None
            pad = (0, 0, width - k.shape[2], 0)
            keys.append(torch.nn.functional.pad(k, pad))
            values.append(torch.nn.functional.pad(v, pad))
        merged.update(torch.cat(keys), torch.cat(values), layer)
    return merged
