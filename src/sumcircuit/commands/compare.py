"""``sumcircuit compare A.json B.json``: paired bootstrap difference A − B per ROUGE metric and
of the reference log-likelihood per token (when both results have it)."""

from __future__ import annotations

import argparse

from sumcircuit.evaluation.rouge import METRICS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="paired bootstrap difference of two evaluate results (A - B) with CI and p",
        description=(
            "Compare two `sumcircuit evaluate` results on the same examples (aligned by id): "
            "mean ROUGE difference A - B, its 95% bootstrap CI and p-value, per metric; the "
            "same for the reference summary's log-likelihood per token when both have it."
        ),
    )
    parser.add_argument("a", help="result JSON of arm A")
    parser.add_argument("b", help="result JSON of arm B")
    parser.add_argument("--out", default=None, help="also write the comparison as JSON")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sumcircuit.evaluation.evaluate import LOGLIK, compare_results
    from sumcircuit.io import write_json

    result = compare_results(args.a, args.b, seed=args.seed, n_boot=args.n_boot)
    print(f"A = {args.a}\nB = {args.b}\nn = {result['n']} paired examples\n")
    print(f"{'metric':<10} {'A':>7} {'B':>7} {'A-B':>8}  {'95% CI':<19} {'p':>6}")
    for metric in (*METRICS, LOGLIK):
        row = result[metric]
        if row is None:
            print(f"{metric:<10} not in both results (re-run `sumcircuit evaluate` to score it)")
            continue
        lo, hi = row["ci95"]
        print(
            f"{metric:<10} {row['a']:7.4f} {row['b']:7.4f} {row['mean_diff']:+8.4f}  "
            f"[{lo:+.4f}, {hi:+.4f}] {row['p_value']:6.3f}"
        )
    if args.out:
        write_json(args.out, result)
        print(f"\nwrote {args.out}")
    return 0
