"""``sumcircuit validate``: causal test of a circuit by activation patching, with random controls."""

from __future__ import annotations

import argparse
from pathlib import Path

from sumcircuit.analysis.causal.validate import ValidateConfig, validate
from sumcircuit.cli_config import ConfigFlags
from sumcircuit.io import check_writable_dir

FLAGS = ConfigFlags(ValidateConfig, required=("finetuned", "circuit"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="patch the circuit between base and fine-tuned models: sufficiency, necessity",
        description=(
            "Sufficiency: base model with the circuit patched in from the fine-tuned model; "
            "necessity: fine-tuned model with the circuit patched from base (or ablated); both as "
            "the fraction of the change in summary log-likelihood, against random controls."
        ),
    )
    FLAGS.add_to(parser)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.set_defaults(func=cmd_validate)


def _fmt(measure: dict) -> str:
    lo, hi = measure["ci95"]
    return f"{measure['value']:.3f}  [95% CI {lo:.3f}, {hi:.3f}]"


def cmd_validate(args: argparse.Namespace) -> int:
    config = FLAGS.build(args)
    check_writable_dir(args.out)
    result = validate(config)
    path = result.save(args.out)
    print(f"documents      {result.n_docs}")
    print(f"m_base         {result.m_base:.4f} nats/token")
    print(f"m_ft           {result.m_ft:.4f} nats/token  (Δ {_fmt(result.delta)})")
    print(f"sufficiency    {_fmt(result.sufficiency)}")
    print(f"necessity      {_fmt(result.necessity)}  ({result.ablation})")
    if result.random_percentile:
        for name, pct in result.random_percentile.items():
            print(f"percentile     {name}: {_fmt(pct)} among {len(result.controls)} controls")
    print(f"time           {result.timing['total_s']:.1f} s")
    print(f"wrote          {path}")
    return 0
