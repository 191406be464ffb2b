"""Held-out log-likelihood of the reference summary: evaluation's second, cheap outcome.

For each example, m = mean over the reference summary's tokens (its end-of-sequence token
included) of ``log p(token | prompt, earlier reference tokens)``: teacher forcing, one forward
per batch, the LM head only at the positions that predict a summary token
(:func:`sumcircuit.analysis.causal.patching.loglik`). Natural log; 0 is perfect, higher is better.

The prompt is the one generation used: same template, the document cut to leave
``max_new_tokens`` free, never the summary (:meth:`Prompter.append_summary`). Unlike ROUGE it
needs no decoding, so it moves with small changes of the model that leave the greedy summary
unchanged. Computed in the model's dtype, without autocast.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from sumcircuit.analysis.causal.patching import loglik
from sumcircuit.data.batching import Prepared, iter_batches
from sumcircuit.data.prompting import Encoded, Prompter, Template
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.stats import bootstrap_ci

__all__ = ["loglik_on_split", "reference_loglik", "teacher_forced"]


def teacher_forced(
    prompts: Prepared,
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: Template,
    max_length: int,
) -> list[Encoded]:
    """Each generation prompt of ``prompts`` (``prepare(..., with_summary=False, reserve=...)``)
    followed by its example's reference summary and EOS, in the same order."""
    if len(prompts.examples) != len(prompts.encoded):
        raise SumcircuitError(
            f"the prepared split has {len(prompts.encoded)} prompts but "
            f"{len(prompts.examples)} examples; build it with sumcircuit.data.batching.prepare"
        )
    prompter = Prompter(tokenizer, template=template, max_length=max_length)
    return [
        prompter.append_summary(prompt, example.summary)
        for prompt, example in zip(prompts.encoded, prompts.examples, strict=True)
    ]


def _positions(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def reference_loglik(
    model: nn.Module,
    arch: Arch,
    encoded: list[Encoded],
    *,
    batch_size: int,
    pad_id: int,
    progress: bool = True,
) -> np.ndarray:
    """m per example of ``encoded`` (teacher-forced sequences), ``(n,)`` float64, input order.

    ``model`` is a plain causal LM or a peft-wrapped one: the adapter's layers live inside the
    wrapped model, which is called directly so that the LM head is found by its table name.
    """
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    longest = max((len(e.input_ids) for e in encoded), default=0)
    limit = _positions(target)
    if limit is not None and longest > limit:
        raise SumcircuitError(
            f"a prompt with its reference summary is {longest} tokens, more than the model's "
            f"{limit} positions; lower --max-length or --max-new-tokens"
        )
    out = np.full(len(encoded), np.nan)
    batches = list(iter_batches(encoded, batch_size, pad_id))
    with torch.inference_mode():
        for indices, batch in tqdm(batches, desc="loglik", unit="batch", disable=not progress):
            out[indices] = loglik(target, arch, batch).cpu().numpy()
    return out


def loglik_on_split(
    model: nn.Module,
    arch: Arch,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Prepared,
    *,
    template: Template,
    max_length: int,
    batch_size: int,
    seed: int = 0,
    n_boot: int = 2000,
    progress: bool = True,
) -> tuple[dict[str, Any], np.ndarray]:
    """m of every example's reference after its generation prompt, and their summary.

    Returns ``({"mean", "ci95": [lo, hi], "n_tokens", "wall_s"}, per-example m)``: the mean over
    examples with a 95% percentile bootstrap CI over examples (seed ``seed``, ``n_boot``
    resamples, the same resampled examples as ROUGE's CI), the reference tokens scored in all,
    and the seconds it took.
    """
    start = time.perf_counter()
    encoded = teacher_forced(prompts, tokenizer, template=template, max_length=max_length)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    per_example = reference_loglik(
        model, arch, encoded, batch_size=batch_size, pad_id=pad_id, progress=progress
    )
    lo, hi = bootstrap_ci(per_example, n_boot=n_boot, seed=seed)
    return {
        "mean": float(per_example.mean()),
        "ci95": [float(lo), float(hi)],
        "n_tokens": int(sum(e.n_summary_tokens for e in encoded)),
        "wall_s": time.perf_counter() - start,
    }, per_example
