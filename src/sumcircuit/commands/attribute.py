"""``sumcircuit attribute``: attribution patching of every layer, head and MLP at once."""

from __future__ import annotations

import argparse
from pathlib import Path

from sumcircuit.analysis.causal.attribute import AttributeConfig, run_attribute
from sumcircuit.cli_config import ConfigFlags
from sumcircuit.distributed import Processes
from sumcircuit.io import check_writable_dir

FLAGS = ConfigFlags(AttributeConfig, required=("finetuned",))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attribute",
        help="estimate every component's patching effect from gradients (a scan in 2 passes)",
        description=(
            "Attribution patching: the sufficiency and necessity of every whole layer, head and "
            "MLP, estimated from a forward and a backward pass per model (atp; its result also "
            "gives the atp-trapezoid locator; the path methods: per path point) instead of one "
            "forward per component. Writes "
            "OUT/attribution_{layer,head,mlp}.csv in scan's layout, "
            "OUT/attribution_per_doc.parquet and OUT/attribution.json. Runs under torchrun, "
            "sharding documents."
        ),
    )
    FLAGS.add_to(parser)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.set_defaults(func=cmd_attribute)


def cmd_attribute(args: argparse.Namespace) -> int:
    config = FLAGS.build(args)
    procs = Processes.from_env()
    procs.on_main(check_writable_dir, args.out)  # before the models load
    try:
        result = run_attribute(config, processes=procs)
    finally:
        procs.close()
    if not procs.main:
        return 0
    csv = result.save(args.out)
    layers = result.frame("layer").sort_values("sufficiency", ascending=False)
    print(
        f"documents {result.n_docs}; m_base {result.m_base:.4f}, m_ft {result.m_ft:.4f}; "
        f"method {result.method}"
    )
    print(layers.head(10).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"time {result.timing['total_s']:.1f} s; wrote {csv} and the head/MLP tables")
    return 0
