"""``sumcircuit faithfulness``: each locator's circuits of growing size, scored on held-out
documents against random sets of the same size."""

from __future__ import annotations

import argparse
from pathlib import Path

from sumcircuit.analysis.causal.areas import choice_sentence
from sumcircuit.analysis.causal.faithfulness import FaithfulnessConfig, faithfulness
from sumcircuit.cli_config import ConfigFlags
from sumcircuit.io import check_writable_dir

FLAGS = ConfigFlags(FaithfulnessConfig, required=("finetuned",))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "faithfulness",
        help="faithfulness curves of every locator (selected on one set, scored on another)",
        description=(
            "For each locator (the diff's kl, js, entropy, weight, actmag; each attribution "
            "result; an exact scan) patch its top-n components for growing n on documents "
            "disjoint from those the locator was computed on: sufficiency and necessity with "
            "95% CIs, percentile among random sets of the same size, CPR and CMD areas. Writes "
            "OUT/faithfulness.csv, OUT/faithfulness.json and OUT/faithfulness.png/.svg."
        ),
    )
    FLAGS.add_to(parser)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.set_defaults(func=cmd_faithfulness)


def _fmt(measure: dict) -> str:
    lo, hi = measure["ci95"]
    return f"{measure['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def cmd_faithfulness(args: argparse.Namespace) -> int:
    from sumcircuit.report.causal_plots import plot_faithfulness

    config = FLAGS.build(args)
    check_writable_dir(args.out)  # before the models load, not after the sweep
    result = faithfulness(config)
    csv = result.save(args.out)
    plots = plot_faithfulness(args.out)
    scoring = result.documents["scoring"]
    print(
        f"scored on {scoring['n_docs']} {scoring['split']} documents ({scoring['excluded']} "
        f"left out as selection documents"
        + (f", {scoring['overlap']} scored on knowingly" if scoring.get("overlap") else "")
        + f"); selection: {result.documents['selection']}"
    )
    ceiling = result.ceiling
    print(
        f"fractions of m_ft − m_base; f(all) (every node patched): sufficiency "
        f"{_fmt(ceiling['sufficiency'])}, necessity {_fmt(ceiling['necessity'])}"
    )
    for name, area in sorted(result.areas.items(), key=lambda kv: -kv[1]["cpr"]):
        lo, hi = area["cpr_ci95"]
        print(
            f"{name:14s} {result.sources[name]['ranking']:8s} CPR {area['cpr']:.3f} "
            f"[{lo:.3f}, {hi:.3f}]  CMD {area['cmd']:.3f}  CPR/f(all) {area['cpr_norm']:.3f}  "
            f"necessity area {area['necessity_area']:.3f}"
        )
    if result.choice:
        print(choice_sentence(result.choice))
    print(f"time {result.timing['total_s']:.1f} s; wrote {csv}, {', '.join(map(str, plots))}")
    return 0
