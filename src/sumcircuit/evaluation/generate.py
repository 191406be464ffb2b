"""Batched summary generation with a KV cache, and ROUGE of the generated summaries on a split.

Prompts are sorted by length, batched with *left* padding (so every row's last prompt token sits
at the same position and the new tokens line up), and decoded by ``model.generate`` with a KV
cache. Each prompt is prefilled once, alone (:mod:`sumcircuit.evaluation.prefill`); that prefill
also serves the reference log-likelihood when :func:`generate_and_score` is given the references.
transformers derives each row's position ids from the attention mask, so a padded row generates
exactly what it would alone (the tests pin this token for token). Greedy by default;
``num_beams > 1`` runs beam search. Summaries come back in the input order.

Decoding options, both off by default and both transformers' own logits processors
(:func:`decoding_processors`): ``no_repeat_ngram_size`` (a token that would repeat an n-gram of
the prompt or the summary so far is banned) and ``repetition_penalty`` (CTRL's penalty on every
token already in the prompt or the summary). They apply as configured here, never as a model's
own generation config sets them.

Where a summary ends:
- at the first end-of-sequence token (the tokenizer's, and the model's generation config's);
- for one-sentence summaries (``stop_at_newline=True``, the default — XSum), at the first
  newline that follows some text. A *stopping criterion* (:class:`NewlineStop`) ends a row's
  generation there, so a batch stops as soon as all its rows have a sentence instead of running
  to ``max_new_tokens``; the decoded text is then *cut* at that newline as well, because one
  token can carry text past it (``".\\n\\nThe"``). Newlines before any text (a model that starts
  its answer on a new line) do not count.

bf16 autocast on CPU is off by default: on the real smollm2-135m it changed the greedy summary
of 5-8 of 16 XSum test documents relative to fp32 (``benchmarks/generate_bench.py``, results in
``benchmarks/RESULTS.md``; on the AVX2 development CPU it is also ~4x slower), and evaluation
must score the model, not its rounding. ``bf16=True`` turns it on (the training engineer's per-epoch
validation may prefer speed).
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    PreTrainedTokenizerBase,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
)

from sumcircuit.data.batching import Prepared, iter_batches
from sumcircuit.data.prompting import Encoded
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.loglik import check_fits, check_prepared, scored_references
from sumcircuit.evaluation.prefill import batch_cache, prefix_cache
from sumcircuit.evaluation.rouge import aggregate, score_pairs

__all__ = [
    "Generated",
    "NewlineStop",
    "decode",
    "decoding_processors",
    "generate_and_score",
    "generate_ids",
    "generate_summaries",
    "rouge_on_split",
    "score_predictions",
]

log = logging.getLogger(__name__)


class NewlineStop(StoppingCriteria):
    """Stop a row at the first generated token holding a newline that follows some text.

    Stateless: each call recomputes from the generated tokens ``input_ids[:, prompt_len:]``, so it
    stays right under beam search, where rows are reordered between steps.
    """

    def __init__(self, tables: Tables, prompt_len: int) -> None:
        self.prompt_len = prompt_len
        self.has_newline, self.text_before_newline, self.has_text = tables

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        stops = newline_stops(
            input_ids[:, self.prompt_len :].cpu(),
            self.has_newline,
            self.text_before_newline,
            self.has_text,
        )  # (B, N)
        return stops.any(dim=1).to(input_ids.device)


def newline_stops(
    generated: torch.Tensor,
    has_newline: torch.Tensor,
    text_before_newline: torch.Tensor,
    has_text: torch.Tensor,
) -> torch.Tensor:
    """(B, N) bool: generated token j of row b ends a one-sentence summary.

    Token j ends it when it holds a newline and either some text precedes the newline inside
    the token or an earlier generated token (0..j-1) holds non-whitespace text. The three
    tables are (V,) bool over the vocabulary.
    """
    text = has_text[generated]  # (B, N)
    text_earlier = (text.long().cumsum(dim=1) - text.long()) > 0  # exclusive prefix "any"
    return has_newline[generated] & (text_before_newline[generated] | text_earlier)


Tables = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
_TABLE_CACHE: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, dict[int, Tables]] = (
    weakref.WeakKeyDictionary()
)


def _token_tables(tokenizer: PreTrainedTokenizerBase, size: int) -> Tables:
    """(V,) bool tables: the token's text has a newline / non-space text before its first
    newline / any non-space text. ``V = max(size, len(tokenizer))`` (ids the tokenizer does not
    know are all False). Decoded once per tokenizer object (~1 s for 50k tokens)."""
    cached = _TABLE_CACHE.setdefault(tokenizer, {})
    if size not in cached:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        texts += [""] * (size - len(texts))
        heads = [t.split("\n", 1)[0] for t in texts]
        cached[size] = (
            torch.tensor(["\n" in t for t in texts]),
            torch.tensor([bool(h.strip()) for h in heads]),
            torch.tensor([bool(t.strip()) for t in texts]),
        )
    return cached[size]


def _eos_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokenizer's end-of-sequence id plus any the model's generation config names."""
    ids = [tokenizer.eos_token_id]
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += config_eos if isinstance(config_eos, list) else [config_eos]
    return sorted({i for i in ids if i is not None})


def _trim(tokens: list[int], eos: Sequence[int], stop: list[bool] | None) -> list[int]:
    """Generated tokens up to (not including) the first EOS, and up to (including) the first
    newline stop when ``stop`` marks them."""
    for j, token in enumerate(tokens):
        if token in eos:
            return tokens[:j]
        if stop is not None and stop[j]:
            return tokens[: j + 1]
    return tokens


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _check_prompts(prompts: Sequence[Encoded]) -> None:
    bad = next((i for i, p in enumerate(prompts) if p.n_summary_tokens), None)
    if bad is not None:
        raise SumcircuitError(
            f"prompt {bad} already contains a summary; encode prompts with "
            "Prompter.encode(document, None, reserve=max_new_tokens) or prepare(with_summary=False)"
        )


class Generated(NamedTuple):
    """What :func:`generate_and_score` returns, in the input order."""

    ids: list[list[int]]  # generated tokens per prompt, trimmed (module docstring)
    loglik: np.ndarray | None  # (n,) reference log-likelihood per token; None: not scored
    loglik_s: float  # seconds spent scoring the references (their prefill counts as generation)


def decoding_processors(
    pad_lengths: torch.Tensor, *, no_repeat_ngram_size: int = 0, repetition_penalty: float = 1.0
) -> LogitsProcessorList:
    """transformers' own processors for the two decoding options, for a left-padded batch whose
    row b starts after ``pad_lengths[b]`` padding tokens (repeated per beam under beam search).

    The repetition penalty, as in ``generate``, covers the prompt's tokens and the generated ones,
    but never the padding (``prompt_ignore_length``), so a row is decoded as it would be alone.
    An n-gram that overlaps the padding could only be matched once a row has generated the pad
    token, i.e. ended. Off (empty list) at the defaults."""
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(
            RepetitionPenaltyLogitsProcessor(repetition_penalty, prompt_ignore_length=pad_lengths)
        )
    if no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(no_repeat_ngram_size))
    return processors


def generate_and_score(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Encoded],
    references: list[Encoded] | None = None,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 48,
    num_beams: int = 1,
    no_repeat_ngram_size: int = 0,
    repetition_penalty: float = 1.0,
    stop_at_newline: bool = True,
    bf16: bool = False,
    progress: bool = True,
) -> Generated:
    """Generate from ``prompts`` and, given ``references`` (each prompt followed by its reference
    summary, :func:`sumcircuit.evaluation.loglik.teacher_forced`), score every reference's
    log-likelihood from the same prefill of its prompt.

    Each prompt is prefilled once, alone (:func:`~sumcircuit.evaluation.prefill.prefix_cache`);
    greedy generation starts from a batch copy of those caches
    (:func:`~sumcircuit.evaluation.prefill.batch_cache`) and the reference scoring continues
    another (:func:`~sumcircuit.evaluation.loglik.scored_references`). Beam search
    prefills its batch inside ``generate`` (transformers expands the cache per beam), so with
    ``num_beams > 1`` the per-row prefill serves the references only.
    """
    if max_new_tokens < 1:
        raise SumcircuitError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if num_beams < 1:
        raise SumcircuitError(f"--num-beams must be at least 1, got {num_beams}")
    _check_prompts(prompts)
    if references is not None:
        _check_references(prompts, references)
        check_fits(model, references)
        if bf16:
            raise SumcircuitError(
                "the reference log-likelihood is scored without autocast; score it apart from "
                "bf16 generation (sumcircuit.evaluation.loglik.reference_loglik)"
            )
    loglik = None if references is None else np.full(len(prompts), np.nan)
    loglik_s = 0.0
    if not prompts:
        return Generated([], loglik, loglik_s)
    eos = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    vocab = model.get_output_embeddings().weight.shape[0]
    tables = _token_tables(tokenizer, vocab) if stop_at_newline else None
    device = next(model.parameters()).device
    out: list[list[int] | None] = [None] * len(prompts)
    bar = tqdm(total=len(prompts), desc="generate", unit="doc", disable=not progress)
    batches = iter_batches(prompts, batch_size, pad_id, by_length=True, padding_side="left")
    with torch.inference_mode(), _autocast(device, bf16):
        for indices, batch in batches:
            prompt_len = batch.input_ids.shape[1]
            rows = [prompts[i].input_ids for i in indices]
            prefilled = num_beams == 1 or references is not None
            caches = [prefix_cache(model, r) for r in rows] if prefilled else []
            cache = batch_cache(model, rows, caches, max_new_tokens) if num_beams == 1 else None
            if references is not None:
                start = time.perf_counter()
                loglik[indices] = scored_references(model, caches, [references[i] for i in indices])
                loglik_s += time.perf_counter() - start
            pad_lengths = torch.tensor([prompt_len - len(r) for r in rows], device=device)
            processors = decoding_processors(
                pad_lengths.repeat_interleave(num_beams),
                no_repeat_ngram_size=no_repeat_ngram_size,
                repetition_penalty=repetition_penalty,
            )
            criteria = StoppingCriteriaList([NewlineStop(tables, prompt_len)] if tables else [])
            sequences = model.generate(
                input_ids=batch.input_ids.to(device),
                attention_mask=batch.attention_mask.to(device),
                **({"cache": cache} if cache is not None else {}),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=num_beams,
                num_return_sequences=1,
                # the decoding options are the config's alone, not the model's generation config
                repetition_penalty=1.0,
                no_repeat_ngram_size=0,
                logits_processor=processors,
                eos_token_id=eos,
                pad_token_id=pad_id,
                stopping_criteria=criteria,
            )  # (B, prompt_len + N)
            generated = sequences[:, prompt_len:].cpu()  # (B, N)
            stops = newline_stops(generated, *tables).tolist() if tables else None
            for row, index in enumerate(indices):
                out[index] = _trim(generated[row].tolist(), eos, stops[row] if stops else None)
            bar.update(len(indices))
    bar.close()
    return Generated(out, loglik, loglik_s)  # type: ignore[arg-type]


def _check_references(prompts: Sequence[Encoded], references: Sequence[Encoded]) -> None:
    """Each reference encoding must be its prompt followed by a summary."""
    if len(references) != len(prompts):
        raise SumcircuitError(
            f"{len(prompts)} prompts but {len(references)} references; give one reference "
            "encoding per prompt (sumcircuit.evaluation.loglik.teacher_forced)"
        )
    for i, (prompt, ref) in enumerate(zip(prompts, references, strict=True)):
        if (
            ref.summary_start != len(prompt.input_ids)
            or not ref.n_summary_tokens
            or (ref.input_ids[: ref.summary_start] != prompt.input_ids)
        ):
            raise SumcircuitError(
                f"reference {i} is not prompt {i} followed by a summary; build the references "
                "with sumcircuit.evaluation.loglik.teacher_forced from the same prompts"
            )


def generate_ids(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Encoded],
    **options: Any,
) -> list[list[int]]:
    """Generated token ids per prompt, in the input order, trimmed as the module docstring says
    (EOS excluded, the newline-stop token included); ``options`` as :func:`generate_and_score`'s
    keywords."""
    return generate_and_score(model, tokenizer, prompts, **options).ids


def decode(tokenizer: PreTrainedTokenizerBase, ids: list[int], stop_at_newline: bool) -> str:
    """The stripped summary text of generated ``ids`` (its first line with ``stop_at_newline``)."""
    text = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return text.split("\n", 1)[0].strip() if stop_at_newline else text


def generate_summaries(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Encoded],
    **options: Any,
) -> list[str]:
    """Decoded, stripped summaries of ``prompts`` (prompt-only encodings), in the input order;
    ``options`` as :func:`generate_and_score`'s keywords.

    Works with a plain or a peft-wrapped model; runs under ``torch.inference_mode()``.
    """
    ids = generate_ids(model, tokenizer, prompts, **options)
    return [decode(tokenizer, row, options.get("stop_at_newline", True)) for row in ids]


def score_predictions(
    prepared: Prepared, predictions: list[str], *, seed: int = 0, n_boot: int = 2000
) -> tuple[dict, pd.DataFrame]:
    """ROUGE of ``predictions`` (one per example of ``prepared``, in its order) against the
    examples' references.

    Returns :func:`sumcircuit.evaluation.rouge.aggregate` of the scores (bootstrap seed ``seed``,
    ``n_boot`` resamples) and the per-example frame with columns id, reference, prediction,
    rouge1, rouge2, rougeL, rougeLsum, in the split's order.
    """
    references = [e.summary for e in prepared.examples]
    scores = score_pairs(predictions, references)
    frame = pd.concat(
        [
            pd.DataFrame({"id": prepared.ids, "reference": references, "prediction": predictions}),
            scores,
        ],
        axis=1,
    )
    return aggregate(scores, seed=seed, n_boot=n_boot), frame


def rouge_on_split(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prepared_prompts: Prepared,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    **options: Any,
) -> tuple[dict, pd.DataFrame]:
    """Generate a summary per prompt and score it against the example's reference
    (:func:`score_predictions`); ``options`` as :func:`generate_and_score`'s keywords.

    ``prepared_prompts`` comes from ``prepare(..., with_summary=False, reserve=max_new_tokens)``.
    """
    check_prepared(prepared_prompts)
    predictions = generate_summaries(model, tokenizer, prepared_prompts.encoded, **options)
    return score_predictions(prepared_prompts, predictions, seed=seed, n_boot=n_boot)
