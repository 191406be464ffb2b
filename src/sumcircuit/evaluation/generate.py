"""Batched summary generation with a KV cache, and ROUGE of the generated summaries on a split.

Prompts are sorted by length, batched with *left* padding (so every row's last prompt token sits
at the same position and the new tokens line up), and decoded by ``model.generate`` with a KV
cache that greedy decoding fills one prompt at a time (:func:`_prefill`); transformers derives each row's position ids from the attention mask, so a padded row
generates exactly what it would alone (the tests pin this token for token). Greedy by default;
``num_beams > 1`` runs beam search. Summaries come back in the input order.

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
import weakref
from collections.abc import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import (
    PreTrainedTokenizerBase,
    StaticCache,
    StoppingCriteria,
    StoppingCriteriaList,
)

from sumcircuit.data.batching import Prepared, iter_batches
from sumcircuit.data.prompting import Encoded
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.rouge import aggregate, score_pairs

__all__ = ["NewlineStop", "generate_ids", "generate_summaries", "rouge_on_split"]

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


def _prefill(
    model: torch.nn.Module, rows: list[list[int]], max_new_tokens: int, device: torch.device
) -> StaticCache | None:
    """The KV cache of every prompt but its last token, each prompt run alone, left-padded into
    one preallocated batch cache; ``model.generate`` then starts from the last prompt token.

    Why by hand: ``generate`` prefills the left-padded batch, which on XSum lengths (85-464
    tokens in a batch of 16) is 1.7x the work of the prompts alone, and in a batch the prefill is
    about half the time of a one-sentence summary. A row alone gets the same positions (0..n-1) and keys as its
    unpadded slots in the batch, and the padded slots are masked, so the summaries do not
    change (tests compare with one-at-a-time and plain ``generate``). The cache is static
    (written in place): the default dynamic cache concatenates every layer's keys and values at
    each new token, which was 2/3 of a decode step at batch 16. Sliding-window layers keep
    a row's last ``window - 1`` keys; padding every row to the batch width before ``update``
    gives them the layout and length count of a padded prefill. Returns None (generation then
    prefills as usual) for a single prompt, a prompt of one token or a cache layer of another
    kind.
    """
    if len(rows) == 1 or min(len(r) for r in rows) < 2:
        return None  # nothing to pad: generate's own prefill and dynamic cache are as fast
    per_row = [
        model(
            input_ids=torch.tensor([r[:-1]], device=device), use_cache=True, logits_to_keep=1
        ).cache.layers
        for r in rows
    ]
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


def generate_ids(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Encoded],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 48,
    num_beams: int = 1,
    stop_at_newline: bool = True,
    bf16: bool = False,
    progress: bool = True,
) -> list[list[int]]:
    """Generated token ids per prompt, in the input order, trimmed as the module docstring says
    (EOS excluded, the newline-stop token included)."""
    if max_new_tokens < 1:
        raise SumcircuitError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if num_beams < 1:
        raise SumcircuitError(f"--num-beams must be at least 1, got {num_beams}")
    _check_prompts(prompts)
    if not prompts:
        return []
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
            criteria = StoppingCriteriaList([NewlineStop(tables, prompt_len)] if tables else [])
            cache = (
                _prefill(model, [prompts[i].input_ids for i in indices], max_new_tokens, device)
                if num_beams == 1
                else None
            )
            sequences = model.generate(
                input_ids=batch.input_ids.to(device),
                attention_mask=batch.attention_mask.to(device),
                **({"cache": cache} if cache is not None else {}),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=num_beams,
                num_return_sequences=1,
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
    return out  # type: ignore[return-value]


def _decode(tokenizer: PreTrainedTokenizerBase, ids: list[int], stop_at_newline: bool) -> str:
    text = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return text.split("\n", 1)[0].strip() if stop_at_newline else text


def generate_summaries(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Encoded],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 48,
    num_beams: int = 1,
    progress: bool = True,
    stop_at_newline: bool = True,
    bf16: bool = False,
) -> list[str]:
    """Decoded, stripped summaries of ``prompts`` (prompt-only encodings), in the input order.

    Works with a plain or a peft-wrapped model; runs under ``torch.inference_mode()``.
    """
    ids = generate_ids(
        model,
        tokenizer,
        prompts,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        stop_at_newline=stop_at_newline,
        bf16=bf16,
        progress=progress,
    )
    return [_decode(tokenizer, row, stop_at_newline) for row in ids]


def rouge_on_split(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prepared_prompts: Prepared,
    *,
    batch_size: int,
    max_new_tokens: int,
    num_beams: int = 1,
    seed: int = 0,
    stop_at_newline: bool = True,
    bf16: bool = False,
    progress: bool = True,
    n_boot: int = 2000,
) -> tuple[dict, pd.DataFrame]:
    """Generate a summary per prompt and score it against the example's reference.

    ``prepared_prompts`` comes from ``prepare(..., with_summary=False, reserve=max_new_tokens)``.
    Returns :func:`sumcircuit.evaluation.rouge.aggregate` of the scores (bootstrap seed ``seed``,
    ``n_boot`` resamples)
    and the per-example frame with columns id, reference, prediction, rouge1, rouge2, rougeL,
    rougeLsum, in the split's order.
    """
    prepared = prepared_prompts
    if len(prepared.examples) != len(prepared.encoded):
        raise SumcircuitError(
            f"the prepared split has {len(prepared.encoded)} prompts but "
            f"{len(prepared.examples)} examples; build it with sumcircuit.data.batching.prepare"
        )
    predictions = generate_summaries(
        model,
        tokenizer,
        prepared.encoded,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        progress=progress,
        stop_at_newline=stop_at_newline,
        bf16=bf16,
    )
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
