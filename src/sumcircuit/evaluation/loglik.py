"""Held-out log-likelihood of the reference summary: evaluation's second, cheap outcome.

For each example, m = mean over the reference summary's tokens (its end-of-sequence token
included) of ``log p(token | prompt, earlier reference tokens)``: teacher forcing. Natural log;
0 is perfect, higher is better.

The prompt is the one generation used: same template, the document cut to leave
``max_new_tokens`` free, never the summary (:meth:`Prompter.append_summary`). Each prompt is
encoded once (:func:`sumcircuit.evaluation.prefill.prefix_cache`, all but its last token, alone);
:func:`scored_references` continues those caches with the last prompt token and the reference,
a few rows of similar reference length in one padded batch (:func:`batch_continuation_loglik`;
:func:`continuation_loglik` is the one-row form), so every logit it computes predicts a reference
token. ``evaluate`` hands generation the same caches, so the prompt is not encoded twice;
:func:`reference_loglik` scores a split without generating, in generation's batches, so the
values are the same either way. Unlike ROUGE it needs no decoding, so it moves with small
changes of the model that leave the greedy summary unchanged. Computed in the model's dtype,
without autocast.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedTokenizerBase

from sumcircuit.analysis.causal.patching import summary_loglik
from sumcircuit.data.batching import Prepared, iter_batches
from sumcircuit.data.prompting import Encoded, Prompter, Template
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.prefill import batch_cache, prefix_cache
from sumcircuit.stats import bootstrap_ci

#: Rows per batched continuation: sorted by reference length, a few rows pad less than the
#: whole evaluation batch and still read each weight once for several rows.
CONTINUATION_ROWS = 8

__all__ = [
    "CONTINUATION_ROWS",
    "batch_continuation_loglik",
    "check_fits",
    "check_prepared",
    "continuation_loglik",
    "loglik_summary",
    "reference_loglik",
    "scored_references",
    "teacher_forced",
]


def check_prepared(prepared: Prepared) -> None:
    """A prepared split pairs each prompt with its example."""
    if len(prepared.examples) != len(prepared.encoded):
        raise SumcircuitError(
            f"the prepared split has {len(prepared.encoded)} prompts but "
            f"{len(prepared.examples)} examples; build it with sumcircuit.data.batching.prepare"
        )


def teacher_forced(
    prompts: Prepared,
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: Template,
    max_length: int,
) -> list[Encoded]:
    """Each generation prompt of ``prompts`` (``prepare(..., with_summary=False, reserve=...)``)
    followed by its example's reference summary and EOS, in the same order."""
    check_prepared(prompts)
    prompter = Prompter(tokenizer, template=template, max_length=max_length)
    return [
        prompter.append_summary(prompt, example.summary)
        for prompt, example in zip(prompts.encoded, prompts.examples, strict=True)
    ]


def check_fits(model: nn.Module, forced: list[Encoded]) -> None:
    """Refuse, in one sentence, a prompt with its reference longer than the model's positions."""
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    longest = max((len(e.input_ids) for e in forced), default=0)
    if limit is not None and longest > limit:
        raise SumcircuitError(
            f"a prompt with its reference summary is {longest} tokens, more than the model's "
            f"{limit} positions; lower --max-length or --max-new-tokens"
        )


def continuation_loglik(model: nn.Module, cache: DynamicCache | None, forced: Encoded) -> float:
    """m of ``forced``'s reference, continuing ``cache``: the :func:`prefix_cache` of its prompt
    (None for a one-token prompt). The cache grows by the scored tokens.

    Input: the last prompt token and the reference but its last token, at the positions after
    the cache; position j predicts reference token j, so the LM head runs only where needed.
    ``model`` is a plain causal LM or a peft-wrapped one (adapter on).
    """
    if not forced.n_summary_tokens:
        raise SumcircuitError("continuation_loglik needs a prompt followed by its reference")
    device = next(model.parameters()).device
    start = forced.summary_start - 1  # the last prompt token predicts the first reference token
    inputs = torch.tensor([forced.input_ids[start:-1]], device=device)  # (1, L)
    labels = torch.tensor(forced.input_ids[start + 1 :], device=device)  # (L,)
    logits = model(input_ids=inputs, cache=cache, use_cache=cache is not None).logits[0]  # (L, V)
    rows = torch.zeros_like(labels)
    return float(summary_loglik(logits, labels, rows, 1)[0])


def batch_continuation_loglik(
    model: nn.Module,
    caches: list[DynamicCache | None],
    forced: list[Encoded],
) -> np.ndarray | None:
    """m of each of ``forced``'s references in one forward: the rows' :func:`prefix_cache`
    ``caches`` (left untouched) copied into one left-padded batch cache, each continued with
    its last prompt token and reference, right-padded. ``(n,)`` float64, equal to
    :func:`continuation_loglik` row by row up to float rounding (the padded batch runs other
    kernels); None where the caches cannot be batched (:func:`batch_cache`).

    Why batched: a continuation of a few dozen tokens is a thin matmul that reads every weight
    once per row; one batch reads them once.
    """
    starts = [f.summary_start - 1 for f in forced]  # the last prompt token's position
    prompts = [f.input_ids[: s + 1] for f, s in zip(forced, starts, strict=True)]
    tails = [f.input_ids[s:-1] for f, s in zip(forced, starts, strict=True)]
    longest = max(len(t) for t in tails)
    cache = batch_cache(model, prompts, caches, longest)
    if cache is None:
        return None
    device = next(model.parameters()).device
    width = max(starts)  # cached positions of the longest prompt
    inputs = torch.tensor([t + [t[-1]] * (longest - len(t)) for t in tails], device=device)
    mask = torch.tensor(
        [[0] * (width - s) + [1] * (s + longest) for s in starts], device=device
    )  # (B, width + longest): left padding off; the right padding follows every real token
    positions = torch.tensor(starts, device=device)[:, None] + torch.arange(longest, device=device)
    real = (
        torch.arange(longest, device=device)[None, :]
        < torch.tensor([len(t) for t in tails], device=device)[:, None]
    )  # (B, longest)
    head = model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: (args[0][real], *args[1:])  # the LM head skips the padding
    )
    try:
        logits = model(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
        ).logits  # (N, V): the real positions, row by row
    finally:
        head.remove()
    labels = torch.tensor(  # (N,): row by row, as the real positions
        [token for f, s in zip(forced, starts, strict=True) for token in f.input_ids[s + 1 :]],
        device=device,
    )
    rows = real.nonzero()[:, 0]
    return summary_loglik(logits, labels, rows, len(forced)).cpu().numpy()


def scored_references(
    model: nn.Module, caches: list[DynamicCache | None], forced: list[Encoded]
) -> np.ndarray:
    """m of each of ``forced``'s references, ``(n,)`` float64 in their order, continuing the
    rows' :func:`prefix_cache` ``caches`` (left untouched): rows sorted by reference length and
    scored :data:`CONTINUATION_ROWS` at a time (:func:`batch_continuation_loglik`, less padding
    than one batch), row by row where a batch cannot be built."""
    out = np.full(len(forced), np.nan)
    if not forced:
        return out
    order = np.argsort([f.n_summary_tokens for f in forced], kind="stable")
    for group in np.array_split(order, math.ceil(len(order) / CONTINUATION_ROWS)):
        rows = [caches[i] for i in group]
        scored = batch_continuation_loglik(model, rows, [forced[i] for i in group])
        if scored is None:  # each row's own cache, copied: the caller's stays as it was
            scored = [
                continuation_loglik(model, copy.deepcopy(cache), forced[i])
                for i, cache in zip(group, rows, strict=True)
            ]
        out[group] = scored
    return out


def reference_loglik(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Prepared,
    *,
    template: Template,
    max_length: int,
    batch_size: int = 16,
    progress: bool = True,
) -> np.ndarray:
    """m per example of ``prompts`` (``prepare(..., with_summary=False, reserve=...)``), ``(n,)``
    float64 in their order, without generating: each prompt prefilled once and continued with
    its reference, in the batches generation would use (``batch_size`` prompts of similar
    length), so the values are those :func:`~sumcircuit.evaluation.generate.generate_and_score`
    gives. ``template`` and ``max_length`` are those ``prompts`` were encoded with.

    The Python entry of ``sumcircuit evaluate --no-generate``; runs under
    ``torch.inference_mode()``.
    """
    forced = teacher_forced(prompts, tokenizer, template=template, max_length=max_length)
    check_fits(model, forced)
    out = np.full(len(forced), np.nan)
    bar = tqdm(total=len(forced), desc="loglik", unit="doc", disable=not progress)
    with torch.inference_mode():
        # generation's batches of prompts; only their indices are used, not their padding
        for indices, _ in iter_batches(prompts.encoded, batch_size, 0, padding_side="left"):
            rows = [forced[i] for i in indices]
            caches = [prefix_cache(model, e.input_ids[: e.summary_start]) for e in rows]
            out[indices] = scored_references(model, caches, rows)
            bar.update(len(indices))
    bar.close()
    return out


def loglik_summary(
    per_example: np.ndarray,
    forced: list[Encoded],
    *,
    wall_s: float,
    seed: int = 0,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """``{"mean", "ci95": [lo, hi], "n_tokens", "wall_s"}`` of per-example m: the mean over
    examples with a 95% percentile bootstrap CI over examples (seed ``seed``, ``n_boot``
    resamples, the same resampled examples as ROUGE's CI), the reference tokens scored in all
    (``forced``: the teacher-forced encodings), and the seconds the scoring took."""
    lo, hi = bootstrap_ci(per_example, n_boot=n_boot, seed=seed)
    return {
        "mean": float(per_example.mean()),
        "ci95": [float(lo), float(hi)],
        "n_tokens": int(sum(e.n_summary_tokens for e in forced)),
        "wall_s": wall_s,
    }
