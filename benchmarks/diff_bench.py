"""Benchmark of ``sumcircuit diff`` on the real default model (smollm2-135m), in one process.

Ratios printed:
1. diff streaming loop time / time of two plain SDPA forward passes (base + fine-tuned) over the
   same batches (target <= 1.3). Plain = ``model(input_ids, attention_mask)`` with all logits,
   as a user would run it; the ratio against forwards with ``logits_to_keep=1`` is shown too.
2. TransformerLens baseline / diff loop (target >= 1.5): ``TransformerBridge.run_with_cache``
   of every layer's ``hook_pattern`` and ``hook_resid_post`` for both models, then the same
   metrics (entropy, normalized entropy, KL both ways, JS at the region rows; ActMag, cosine,
   CKA at the region tokens) into the same accumulator.
3. Peak RSS growth during ``run_diff`` at a small and a large number of documents (each in a
   fresh subprocess, RSS sampled every 20 ms; target within 10%).

The fine-tuned model is the base with seeded Gaussian noise (1e-3 of each tensor's std) unless
``--finetuned`` is given: speed and memory do not depend on the weights' values.

    python benchmarks/diff_bench.py --docs 8 --mem-docs 16 128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import numpy as np
import torch

from sumcircuit.analysis.diff.accumulate import DiffAccumulator, head_region_sums
from sumcircuit.analysis.diff.capture import Rows, gather_rows
from sumcircuit.analysis.diff.run import DiffConfig, _PairRunner, run_diff
from sumcircuit.data.batching import iter_batches, prepare
from sumcircuit.models.loader import load_model


def models(finetuned: str | None):
    base = load_model("smollm2-135m")
    if finetuned:
        return base, load_model(finetuned)
    ft = load_model("smollm2-135m")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ft.model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 1e-3 * p.std())
    return base, ft


def plain_pair(base, ft, batch, **kwargs) -> None:
    for m in (base, ft):
        m.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            use_cache=False,
            **kwargs,
        )


def diff_pair(base, ft, acc, idx, batch) -> None:
    """One batch of the diff's streaming loop, exactly as ``run_diff`` runs it."""
    runner = _PairRunner(base, ft, acc)
    with ExitStack() as stack:
        for context in runner.contexts():
            stack.enter_context(context)
        runner.run(idx, batch, "summary")


def bridges(base, ft):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM

    from sumcircuit.models.loader import fetch_model

    path = fetch_model("smollm2-135m")
    out = []
    for m in (base, ft):
        hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
        hf.load_state_dict(m.model.state_dict())
        out.append(
            TransformerBridge.boot_transformers(
                str(path), hf_model=hf, tokenizer=m.tokenizer, device="cpu"
            )
        )
    return out


def _wanted(name: str) -> bool:
    return name.endswith("hook_pattern") or name.endswith("hook_resid_post")


def transformerlens_pair(pair, acc, idx, batch) -> None:
    """The baseline: run_with_cache of all patterns and residuals, then the same metrics."""
    docs = np.asarray(idx)
    rows = Rows.from_mask(batch.summary_mask)
    caches = [
        b.run_with_cache(
            batch.input_ids, attention_mask=batch.attention_mask, names_filter=_wanted
        )[1]
        for b in pair
    ]
    n_keys = gather_rows(batch.attention_mask.cumsum(-1), rows, 1)
    acc.add_counts(docs, rows.valid)
    for layer in range(acc.n_layers):
        p, q = (gather_rows(c[f"blocks.{layer}.attn.hook_pattern"], rows, 2) for c in caches)
        acc.add_heads(docs, layer, head_region_sums(p, q, n_keys, rows.valid))
        hb, hf = (gather_rows(c[f"blocks.{layer}.hook_resid_post"], rows, 1) for c in caches)
        acc.add_hidden(docs, layer, hb, hf, rows.valid)


def interleaved_times(
    base, ft, batches, n_docs: int, with_tl: bool, repeats: int
) -> dict[str, float]:
    """Total seconds per method; methods alternate batch by batch, so load changes on a shared
    machine hit all of them alike."""
    L, H = base.arch.n_layers, base.arch.n_heads
    tl = bridges(base, ft) if with_tl else None
    methods = {
        "plain": lambda idx, b: plain_pair(base, ft, b),
        "plain_last_logit": lambda idx, b: plain_pair(base, ft, b, logits_to_keep=1),
        "diff": lambda idx, b: diff_pair(base, ft, DiffAccumulator(n_docs, L, H), idx, b),
    }
    if tl is not None:
        methods["transformerlens"] = lambda idx, b: transformerlens_pair(
            tl, DiffAccumulator(n_docs, L, H), idx, b
        )
    totals = dict.fromkeys(methods, 0.0)
    with torch.inference_mode():
        for fn in methods.values():  # warm-up on the smallest batch
            fn(*batches[0])
        for _ in range(repeats):
            for idx, batch in batches:
                for name, fn in methods.items():
                    start = time.perf_counter()
                    fn(idx, batch)
                    totals[name] += time.perf_counter() - start
    return totals


def memory_child(n_docs: int, max_length: int, batch_size: int) -> None:
    """Print the peak RSS growth (bytes) of one run_diff on ``n_docs`` train documents."""
    base, ft = models(None)
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    before, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    config = DiffConfig(
        finetuned="ft",
        split="train",
        limit=n_docs,
        max_length=max_length,
        batch_size=batch_size,
        n_boot=200,
    )
    result = run_diff(config, base=base, finetuned=ft)
    done.set()
    thread.join()
    print(
        json.dumps(
            {
                "n_docs": n_docs,
                "rss_growth": peak[0] - before,
                "seconds": result.summary["timing"]["seconds"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--mem-docs", type=int, nargs=2, default=[16, 128])
    parser.add_argument("--mem-max-length", type=int, default=128)
    parser.add_argument("--finetuned", default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["timing", "tl", "memory"])
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.mem_max_length, args.batch_size)
        return
    print(
        f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    if "timing" not in args.skip:
        base, ft = models(args.finetuned)
        prepared = prepare(
            "xsum", "validation", base.tokenizer, limit=args.docs, max_length=args.max_length
        )
        batches = list(iter_batches(prepared.encoded, args.batch_size, base.tokenizer.pad_token_id))
        tokens = sum(int(b.attention_mask.sum()) for _, b in batches)
        t = interleaved_times(
            base, ft, batches, len(prepared.encoded), "tl" not in args.skip, args.repeats
        )
        config = DiffConfig(
            finetuned="ft", limit=args.docs, max_length=args.max_length, batch_size=args.batch_size
        )
        start = time.perf_counter()
        result = run_diff(config, base=base, finetuned=ft)
        total = time.perf_counter() - start
        loop = result.summary["timing"]["seconds"]
        print(
            f"documents {args.docs}, tokens per model {tokens}, batch {args.batch_size}, repeats {args.repeats}"
        )
        for name, seconds in t.items():
            print(f"{name:<38} {seconds:8.2f} s")
        print(
            f"RATIO diff / plain forwards              {t['diff'] / t['plain']:8.2f}  (target <= 1.3)"
        )
        print(f"      diff / last-logit forwards         {t['diff'] / t['plain_last_logit']:8.2f}")
        if "transformerlens" in t:
            print(
                f"RATIO TransformerLens / diff             {t['transformerlens'] / t['diff']:8.2f}  (target >= 1.5)"
            )
        print(
            f"run_diff once: loop {loop:.2f} s, total {total:.2f} s (+ weight change, bootstrap, provenance)"
        )
        del base, ft
    if "memory" not in args.skip:
        growth = {}
        for n in args.mem_docs:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--memory-child",
                    str(n),
                    "--mem-max-length",
                    str(args.mem_max_length),
                    "--batch-size",
                    str(args.batch_size),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            record = json.loads(out.stdout.strip().splitlines()[-1])
            growth[n] = record["rss_growth"]
            print(
                f"peak RSS growth at {n:4d} documents: {record['rss_growth'] / 2**20:8.1f} MiB ({record['seconds']:.0f} s)"
            )
        small, large = args.mem_docs
        print(
            f"RATIO peak RSS growth {large} / {small} docs  {growth[large] / growth[small]:8.2f}  (target within 0.9-1.1)"
        )


if __name__ == "__main__":
    main()
