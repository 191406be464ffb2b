"""``sumcircuit compare``: two ``evaluate`` results (``A.json B.json``: paired bootstrap difference
A − B per ROUGE metric and of the reference log-likelihood per token, when both have it), or two
or more run directories (``RUN_A RUN_B ...``: where each locator puts the change, the verdicts,
the circuits; :mod:`sumcircuit.report.run_comparison`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.rouge import METRICS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare two evaluate results (A - B), or two or more run directories",
        description=(
            "Two `sumcircuit evaluate` results on the same examples (aligned by id): mean ROUGE "
            "difference A - B, its 95% bootstrap CI and p-value, per metric; the same for the "
            "reference summary's log-likelihood per token when both have it. "
            "Two or more run directories (`sumcircuit run --out DIR`): for every locator two "
            "runs share, the Jaccard overlap of their top-k layers and the Spearman and Kendall "
            "correlation of their layer scores (by relative depth when the models' depths "
            "differ), each with a 95% bootstrap CI over documents where the runs kept "
            "per-document scores; each run's verdicts and circuit side by side."
        ),
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="A",
        help="two evaluate result JSON files, or two or more run directories",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="evaluate results: also write the comparison to this JSON file; run directories: "
        "write comparison.json, comparison.csv and compare_profiles.png/.svg into this "
        "directory (default: print only)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument(
        "--k",
        type=int,
        default=None,
        help="run directories: size of the top-k layer sets (default: the studies' locate.k)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folders = [Path(p).is_dir() for p in args.inputs]
    if all(folders):
        return _compare_runs(args)
    if any(folders):
        raise SumcircuitError(
            "compare takes either two evaluate result files or two or more run directories, "
            "not both"
        )
    if len(args.inputs) != 2:
        raise SumcircuitError(
            f"compare takes two evaluate result files (A and B), got {len(args.inputs)}; "
            "run directories may be two or more"
        )
    if args.k is not None:
        raise SumcircuitError("--k applies to run directories only, not to evaluate results")
    return _compare_results(args)


def _compare_runs(args: argparse.Namespace) -> int:
    from sumcircuit.io import check_writable_dir
    from sumcircuit.report.run_comparison import compare_runs, format_comparison

    if args.out:
        out = Path(args.out).resolve()
        if any(out == Path(p).resolve() for p in args.inputs):
            raise SumcircuitError(
                f"--out {args.out!r} is one of the compared runs; choose another directory"
            )
        check_writable_dir(args.out)
    result = compare_runs(args.inputs, k=args.k, n_boot=args.n_boot, seed=args.seed)
    print(format_comparison(result))
    if args.out:
        from sumcircuit.report.compare_plots import plot_profiles

        result.save(args.out)
        figures = plot_profiles(result, args.out)
        names = [result.FILE, result.TABLE_FILE, *(p.name for p in figures)]
        print(f"\nwrote {', '.join(names)} into {args.out}")
    return 0


def _compare_results(args: argparse.Namespace) -> int:
    from sumcircuit.evaluation.evaluate import LOGLIK, compare_results
    from sumcircuit.io import write_json

    a, b = args.inputs
    result = compare_results(a, b, seed=args.seed, n_boot=args.n_boot)
    print(f"A = {a}\nB = {b}\nn = {result['n']} paired examples\n")
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
