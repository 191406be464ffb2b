"""``sumcircuit exact``: the exact patching scan — the sufficiency of every single layer or head,
as a table and a plot (``sumcircuit scan``, its old name, still works for one release)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sumcircuit.analysis.causal.exact import ExactConfig, exact_scan
from sumcircuit.cli_config import ConfigFlags
from sumcircuit.io import check_writable_dir

FLAGS = ConfigFlags(ExactConfig, required=("finetuned",))
log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "exact",
        aliases=["scan"],
        help="exact patching: each layer (or head) alone from the fine-tuned model into the base",
        description=(
            "Writes OUT/exact.csv (layer,head,sufficiency,sufficiency_lo,sufficiency_hi; head -1 "
            "on layer rows), OUT/exact.json and OUT/exact.png/.svg: the exact locator "
            "(locate --score exact --sources exact=OUT). 'sumcircuit scan' is its old name."
        ),
    )
    FLAGS.add_to(parser)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.set_defaults(func=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    if args.command == "scan":
        log.warning("'sumcircuit scan' is deprecated; use 'sumcircuit exact'")
    from sumcircuit.report.causal_plots import plot_exact

    config = FLAGS.build(args)
    check_writable_dir(args.out)
    result = exact_scan(config)
    csv = result.save(args.out)
    plots = plot_exact(args.out)
    frame = result.to_frame().sort_values("sufficiency", ascending=False)
    print(f"documents {result.n_docs}; m_base {result.m_base:.4f}, m_ft {result.m_ft:.4f}")
    print(frame.head(10).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"time {result.timing['total_s']:.1f} s; wrote {csv}, {', '.join(map(str, plots))}")
    return 0
