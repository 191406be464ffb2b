"""Summary-token cross-entropy with logits computed only where the loss needs them.

The decoder body (embeddings, blocks, final norm) runs on the whole sequence; the LM head — a
``hidden × vocab`` matmul that dominates the cost for large vocabularies — runs only on the rows
whose label is a summary token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sumcircuit.data.prompting import IGNORE_INDEX, Batch


def unwrapped(model: nn.Module) -> nn.Module:
    """The causal LM itself: a peft-wrapped model's base model (adapters stay injected), or
    ``model``."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module, float | None]:
    """The decoder body, the LM head and the final logit soft-cap (None when the model has
    none) of a causal LM, plain or peft-wrapped."""
    base = unwrapped(model)
    cap = getattr(base.config, "final_logit_softcapping", None)
    return base.get_decoder(), base.get_output_embeddings(), cap


def summary_ce_sum(
    body: nn.Module, head: nn.Module, batch: Batch, softcap: float | None = None
) -> tuple[torch.Tensor, int]:
    """``(Σ CE over summary tokens, number of summary tokens)`` of one batch.

    CE at position t = −log softmax(logits_t)[labels_t] over the positions with
    ``labels != IGNORE_INDEX``; logits in fp32.
    """
    hidden = body(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state  # (B, T, D)
    where = batch.labels != IGNORE_INDEX  # (B, T)
    logits = head(hidden[where]).float()  # (N, V)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits, batch.labels[where], reduction="sum"), int(where.sum())
