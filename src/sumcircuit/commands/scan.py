"""``sumcircuit scan``: sufficiency of every single layer or head, as a table and a plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from sumcircuit.analysis.scan import ScanConfig, scan
from sumcircuit.cli_config import ConfigFlags
from sumcircuit.io import check_writable_dir

FLAGS = ConfigFlags(ScanConfig, required=("finetuned",))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="patch each layer (or head) alone from the fine-tuned model into the base model",
        description=(
            "Writes OUT/scan.csv (layer,head,sufficiency,sufficiency_lo,sufficiency_hi; head -1 "
            "on layer rows), OUT/scan.json and OUT/scan.png/.svg."
        ),
    )
    FLAGS.add_to(parser)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.set_defaults(func=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    from sumcircuit.report.causal_plots import plot_scan

    config = FLAGS.build(args)
    check_writable_dir(args.out)
    result = scan(config)
    csv = result.save(args.out)
    plots = plot_scan(args.out)
    frame = result.to_frame().sort_values("sufficiency", ascending=False)
    print(f"documents {result.n_docs}; m_base {result.m_base:.4f}, m_ft {result.m_ft:.4f}")
    print(frame.head(10).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"time {result.timing['total_s']:.1f} s; wrote {csv}, {', '.join(map(str, plots))}")
    return 0
