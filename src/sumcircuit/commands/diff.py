"""``sumcircuit diff``: per-head and per-layer differences between a base and a fine-tuned model."""

from __future__ import annotations

import argparse

from sumcircuit.analysis.diff import REGIONS, DiffConfig, run_diff
from sumcircuit.distributed import Processes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="compare a fine-tuned model with its base, per head and per layer",
        description=(
            "Attention entropy, KL and JS per head, ActMag, cosine, CKA and weight change per "
            "layer, with bootstrap CIs over documents. Writes heads.csv, layers.csv, diff.json "
            "(and per_doc.parquet with --per-doc). Layers and heads are numbered from 0."
        ),
    )
    parser.add_argument("--base", default="smollm2-135m", help="base model (its tokenizer is used)")
    parser.add_argument("--finetuned", required=True, help="fine-tuned model: directory or name")
    parser.add_argument("--data", default="xsum", help="dataset name, local file or hf:NAME")
    parser.add_argument("--split", default="validation", help="split to analyse")
    parser.add_argument("--limit", type=int, default=None, help="first N documents")
    parser.add_argument("--region", choices=REGIONS, default="summary", help="query positions")
    parser.add_argument("--batch-size", type=int, default=4, help="documents per forward pass")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per example")
    parser.add_argument("--template", default="plain", help="prompt template: plain or chat")
    parser.add_argument("--per-doc", action="store_true", help="also write per_doc.parquet")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: auto)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    config = DiffConfig(
        finetuned=args.finetuned,
        base=args.base,
        data=args.data,
        split=args.split,
        limit=args.limit,
        region=args.region,
        batch_size=args.batch_size,
        max_length=args.max_length,
        template=args.template,
        per_doc=args.per_doc,
        dtype=args.dtype,
        n_boot=args.n_boot,
        seed=args.seed,
        device=args.device,
    )
    procs = Processes.from_env()  # under torchrun: join the group, shard the documents
    try:
        result = run_diff(config, processes=procs)
    finally:
        procs.close()
    if procs.main:  # every rank holds the reduced result; one writes it
        result.save(args.out)
        s = result.summary
        lo, hi = s["frac_heads_entropy_decreased_ci95"]
        print(
            f"documents {s['n_docs']} (excluded {s['excluded_docs']}), region tokens {s['n_tokens']}"
        )
        print(
            f"heads with lower entropy after fine-tuning: {s['frac_heads_entropy_decreased']:.1%} "
            f"(95% CI {lo:.1%}-{hi:.1%}); significantly lower (q<0.05): "
            f"{s['frac_heads_sig_decreased']:.1%}, higher: {s['frac_heads_sig_increased']:.1%}"
        )
        print(f"layers by mean KL (most changed first): {s['layers_ranked'][:10]}")
        print(f"time {s['timing']['seconds']:.1f} s; wrote {args.out}")
    return 0
