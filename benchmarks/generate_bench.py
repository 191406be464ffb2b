"""Batched KV-cache generation vs one-at-a-time generation, and bf16 autocast vs fp32.

Usage: .venv/bin/python benchmarks/generate_bench.py [--model smollm2-135m] [--docs 16]
       [--data xsum] [--device cpu|cuda] [--skip-single] [--skip-bf16] [--loglik]

Both arms run the same code (``generate_ids``: KV cache, greedy, stop at EOS or newline) on the
same XSum test prompts in one process; the one-at-a-time arm uses ``batch_size=1``. Reports the
median of ``--repeats`` timings per arm, their ratio, whether both arms produced the same tokens,
how many greedy summaries bf16 autocast changes relative to fp32 (the generation default), and
the batched arm's GFLOP/s (FLOPs counted by ``benchmarks/roofline.py``: prefill + one token per
row and decode step, the steps from the generated lengths). ``--loglik`` also times the reference
log-likelihood from the prompts' prefill caches: each row continued alone vs a few rows per
padded batch (``evaluation.loglik.scored_references``), their largest relative difference, and
each one's against the same computation in float64.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from roofline import ModelDims, batched_generation_flops

from sumcircuit.data.batching import prepare
from sumcircuit.evaluation.generate import generate_ids
from sumcircuit.evaluation.loglik import continuation_loglik, scored_references, teacher_forced
from sumcircuit.evaluation.prefill import prefix_cache
from sumcircuit.models.loader import load_model


def _timed(fn, repeats: int) -> tuple[float, list]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default="xsum", help="dataset name or local file (test split)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--skip-single", action="store_true", help="no one-at-a-time arm")
    parser.add_argument("--skip-bf16", action="store_true", help="no bf16 autocast arm")
    parser.add_argument("--loglik", action="store_true", help="time the reference scoring too")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model, device=args.device)
    prepared = prepare(
        args.data,
        "test",
        loaded.tokenizer,
        limit=args.docs,
        max_length=args.max_length,
        with_summary=False,
        reserve=args.max_new_tokens,
    )
    prompts = prepared.encoded
    common = dict(max_new_tokens=args.max_new_tokens, progress=False)

    def run(batch_size: int, bf16: bool = False) -> list[list[int]]:
        return generate_ids(
            loaded.model, loaded.tokenizer, prompts, batch_size=batch_size, bf16=bf16, **common
        )

    run(args.batch_size)  # warm-up (token tables, allocator)
    t_batched, batched = _timed(lambda: run(args.batch_size), args.repeats)
    prompt_tokens = sum(len(p.input_ids) for p in prompts)
    new_tokens = sum(len(s) for s in batched)
    dims = ModelDims.from_config(loaded.model.config)
    flops = batched_generation_flops(
        dims,
        prompts,
        args.batch_size,
        loaded.tokenizer.pad_token_id,
        args.max_new_tokens,
        lambda idx: min(args.max_new_tokens, max(len(batched[i]) for i in idx) + 1),
    )
    device = next(loaded.model.parameters()).device
    print(
        f"model {args.model} on {device}, {len(prompts)} {args.data} test docs, "
        f"{prompt_tokens} prompt tokens"
    )
    print(f"generated {new_tokens} tokens (mean {new_tokens / len(prompts):.1f} per summary)")
    print(f"batched (batch {args.batch_size:<3d})          {t_batched:7.2f} s")
    print(f"batched GFLOP/s              {flops / t_batched / 1e9:7.2f} ({flops / 1e9:.2f} GFLOP)")
    if not args.skip_single:
        t_single, single = _timed(lambda: run(1), args.repeats)
        same_single = sum(a == b for a, b in zip(batched, single, strict=True))
        print(f"one-at-a-time (batch 1)      {t_single:7.2f} s")
        print(f"speed-up batched / single    {t_single / t_batched:7.2f} x")
        print(f"batched == one-at-a-time     {same_single}/{len(prompts)} summaries")
    if not args.skip_bf16:
        t_bf16, bf16 = _timed(lambda: run(args.batch_size, bf16=True), args.repeats)
        same_bf16 = sum(a == b for a, b in zip(batched, bf16, strict=True))
        print(f"batched bf16 autocast        {t_bf16:7.2f} s ({t_batched / t_bf16:.2f} x fp32)")
        print(f"bf16 greedy == fp32 greedy   {same_bf16}/{len(prompts)} summaries")
    if args.loglik:
        _loglik(loaded, prepared, args)


def _loglik(loaded, prepared, args) -> None:
    """Reference log-likelihood from the prefill caches: row by row vs batched rows, each
    against the same computation in float64 (what float32 rounding alone moves)."""
    forced = teacher_forced(
        prepared, loaded.tokenizer, template="plain", max_length=args.max_length
    )

    def scores(model) -> tuple[float, list[float], float, list[float]]:
        with torch.inference_mode():
            caches = [prefix_cache(model, e.input_ids[: e.summary_start]) for e in forced]

            def alone() -> list[float]:  # each row's cache copied: continuing extends it
                return [
                    continuation_loglik(model, copy.deepcopy(c), e)
                    for c, e in zip(caches, forced, strict=True)
                ]

            t_alone, rows = _timed(alone, max(args.repeats, 2))
            t_batched, batched = _timed(
                lambda: scored_references(model, caches, forced), max(args.repeats, 2)
            )
        return t_alone, rows, t_batched, list(batched)

    def worst(a: list[float], b: list[float]) -> float:
        return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))

    t_alone, rows, t_batched, batched = scores(loaded.model)
    _, rows64, _, batched64 = scores(copy.deepcopy(loaded.model).double())
    tokens = sum(e.n_summary_tokens for e in forced)
    print(f"reference loglik ({tokens} tokens) row by row {t_alone:6.2f} s")
    print(f"reference loglik batched rows     {t_batched:6.2f} s ({t_alone / t_batched:.2f} x)")
    print(f"largest relative difference       {worst(batched, rows):.1e} (row by row vs batched)")
    print(
        f"largest relative difference to float64: row by row {worst(rows, rows64):.1e}, "
        f"batched {worst(batched, batched64):.1e} (float64: the two {worst(batched64, rows64):.0e})"
    )


if __name__ == "__main__":
    main()
