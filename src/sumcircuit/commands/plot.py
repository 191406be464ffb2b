"""``sumcircuit plot --diff DIR``: figures of a diff, from its result files only."""

from __future__ import annotations

import argparse

from sumcircuit.report.plots import plot_diff


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw the figures of a diff (PNG and SVG)",
        description="Heatmaps of delta entropy and KL per head, per-layer profiles with CIs.",
    )
    parser.add_argument("--diff", required=True, help="diff directory")
    parser.add_argument("--out", default=None, help="figure directory (default: DIFF/plots)")
    parser.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    for path in plot_diff(args.diff, args.out):
        print(path)
    return 0
