"""Held-out log-likelihood of the reference summary: evaluation's second, cheap outcome.

For each example, m = mean over the reference summary's tokens (its end-of-sequence token
included) of ``log p(token | prompt, earlier reference tokens)``: teacher forcing. Natural log;
0 is perfect, higher is better.

The prompt is the one generation used: same template, the document cut to leave
``max_new_tokens`` free, never the summary (:meth:`Prompter.append_summary`). Each prompt is
encoded once (:func:`sumcircuit.evaluation.prefill.prefix_cache`, all but its last token, alone);
:func:`continuation_loglik` continues that cache with the last prompt token and the reference,
so every logit it computes predicts a reference token. ``evaluate`` hands generation the same
cache, so the prompt is not encoded twice; :func:`reference_loglik` scores a split without
generating. Unlike ROUGE it needs no decoding, so it moves with small changes of the model that
leave the greedy summary unchanged. Computed in the model's dtype, without autocast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedTokenizerBase

from sumcircuit.analysis.causal.patching import summary_loglik
from sumcircuit.data.batching import Prepared
from sumcircuit.data.prompting import Encoded, Prompter, Template
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.prefill import prefix_cache
from sumcircuit.stats import bootstrap_ci

__all__ = [
    "check_fits",
    "check_prepared",
    "continuation_loglik",
    "loglik_summary",
    "reference_loglik",
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


def reference_loglik(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Prepared,
    *,
    template: Template,
    max_length: int,
    progress: bool = True,
) -> np.ndarray:
    """m per example of ``prompts`` (``prepare(..., with_summary=False, reserve=...)``), ``(n,)``
    float64 in their order, without generating: each prompt prefilled once and continued with
    its reference. ``template`` and ``max_length`` are those ``prompts`` were encoded with.

    The Python entry of ``sumcircuit evaluate --no-generate``; runs under
    ``torch.inference_mode()``.
    """
    forced = teacher_forced(prompts, tokenizer, template=template, max_length=max_length)
    check_fits(model, forced)
    out = np.full(len(forced), np.nan)
    with torch.inference_mode():
        for i, example in enumerate(tqdm(forced, desc="loglik", unit="doc", disable=not progress)):
            cache = prefix_cache(model, example.input_ids[: example.summary_start])
            out[i] = continuation_loglik(model, cache, example)
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
