"""``sumcircuit locate``: pick the circuit's layers or heads from a diff."""

from __future__ import annotations

import argparse

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.locate.rules import LocateConfig, locate
from sumcircuit.cli_config import ConfigFlags
from sumcircuit.io import check_writable_file

FLAGS = ConfigFlags(LocateConfig)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "locate",
        help="select the most changed layers or heads of a diff as a circuit",
        description="Rank components of a diff by a score and keep those a rule selects.",
    )
    FLAGS.add_to(parser)
    parser.add_argument("--out", required=True, help="circuit JSON file to write")
    parser.set_defaults(func=cmd_locate)


def cmd_locate(args: argparse.Namespace) -> int:
    config = FLAGS.build(args)
    check_writable_file(Circuit.path(args.out))
    circuit = locate(config)
    circuit.save(args.out)
    picked = circuit.layers if circuit.level == "layer" else [list(h) for h in circuit.heads]
    print(f"{circuit.level}s selected by {circuit.rule} on {circuit.score}: {picked}")
    if "locator_choice" in circuit.scores:
        print(circuit.scores["locator_choice"]["sentence"])
    print(f"wrote {args.out}")
    return 0
