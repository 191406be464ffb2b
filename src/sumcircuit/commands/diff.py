"""``sumcircuit diff``: per-head and per-layer differences between a base and a fine-tuned model."""

from __future__ import annotations

import argparse

from sumcircuit.analysis.diff.run import DiffConfig, run_diff
from sumcircuit.cli_config import ConfigFlags
from sumcircuit.distributed import Processes
from sumcircuit.io import check_writable_dir

FLAGS = ConfigFlags(DiffConfig, required=("finetuned",))


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
    FLAGS.add_to(parser)
    parser.add_argument("--out", required=True, help="output directory")
    parser.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    config = FLAGS.build(args)
    procs = Processes.from_env()  # under torchrun: join the group, shard the documents
    procs.on_main(check_writable_dir, args.out)  # before the models load, not after the diff
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
