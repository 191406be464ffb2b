"""``sumcircuit adapt``: where a low-rank update of the base model can lower the summary loss —
gradient scores, a short all-layer LoRA probe and the weights' spectrum, per layer."""

from __future__ import annotations

import argparse
from pathlib import Path

from sumcircuit.analysis.adapt.config import AdaptConfig
from sumcircuit.analysis.adapt.result import PARTS
from sumcircuit.analysis.adapt.run import run_adapt
from sumcircuit.analysis.locate.registry import locator
from sumcircuit.cli_config import ConfigFlags
from sumcircuit.io import check_writable_dir

FLAGS = ConfigFlags(AdaptConfig)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "adapt",
        help="score every layer as a place for LoRA, from the base model and training pairs",
        description=(
            "Adaptation locators, from the base model and the train split only: rgn, fisher and "
            "grad-energy (one gradient pass over --limit pairs), probe-norm and probe-act (a "
            "--probe-steps LoRA run on every layer, trained into OUT/probe), spectrum-snr (the "
            "weights alone). Writes OUT/adapt_layers.csv, OUT/adapt_matrices.csv and "
            "OUT/adapt.json; rank with locate --score rgn --sources rgn=OUT."
        ),
    )
    FLAGS.add_to(parser)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.set_defaults(func=cmd_adapt)


def cmd_adapt(args: argparse.Namespace) -> int:
    config = FLAGS.build(args)
    check_writable_dir(args.out)  # before the model loads
    result = run_adapt(config, args.out)
    path = result.save(args.out)
    for part in result.parts:
        for name in PARTS[part]:
            top = locator(name).rank("layer", args.out).top(3)
            print(f"{name:13s} top layers {', '.join(map(str, top))}")
    timing = result.timing
    spent = ", ".join(f"{p} {timing[p + '_s']:.1f} s" for p in result.parts)
    print(f"time {timing['total_s']:.1f} s ({spent}); wrote {path}")
    return 0
