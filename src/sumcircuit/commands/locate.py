"""``sumcircuit locate``: pick the circuit's layers or heads from a diff."""

from __future__ import annotations

import argparse

from sumcircuit.analysis.locate import LEVELS, RULES, SCORES, LocateConfig, locate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "locate",
        help="select the most changed layers or heads of a diff as a circuit",
        description="Rank components of a diff by a score and keep those a rule selects.",
    )
    parser.add_argument("--diff", required=True, help="diff directory")
    parser.add_argument("--out", required=True, help="circuit JSON file to write")
    parser.add_argument("--level", choices=LEVELS, default="layer", help="layers or heads")
    parser.add_argument("--score", choices=SCORES, default="kl", help="ranking score")
    parser.add_argument("--rule", choices=RULES, default="topk", help="selection rule")
    parser.add_argument("--k", type=int, default=3, help="topk: how many")
    parser.add_argument("--z", type=float, default=1.0, help="zscore: mean + z*std")
    parser.add_argument("--q", type=float, default=0.05, help="fdr: q-value threshold")
    parser.add_argument("--control-diff", default=None, help="diff whose scores are noise")
    parser.add_argument("--scan", default=None, help="scan directory (for --score causal)")
    parser.set_defaults(func=cmd_locate)


def cmd_locate(args: argparse.Namespace) -> int:
    config = LocateConfig(
        diff=args.diff,
        level=args.level,
        score=args.score,
        rule=args.rule,
        k=args.k,
        z=args.z,
        q=args.q,
        control_diff=args.control_diff,
        scan=args.scan,
    )
    circuit = locate(config)
    circuit.save(args.out)
    picked = circuit.layers if circuit.level == "layer" else [list(h) for h in circuit.heads]
    print(f"{circuit.level}s selected by {circuit.rule} on {circuit.score}: {picked}")
    print(f"wrote {args.out}")
    return 0
