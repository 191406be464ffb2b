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
    if result.delta.get("negative") or result.delta.get("ci_spans_zero"):
        print(
            "               (the gain is negative or not established: read fractions of it with care)"
        )
    print(
        "fractions of m_ft − m_base; f(all): every node of the level patched; normalised: f / f(all)"
    )
    for name in ("sufficiency", "necessity"):
        line = f"{name:14s} {_fmt(getattr(result, name))}"
        if result.ceiling:
            line += f"  f(all) {_fmt(result.ceiling[name])}"
            line += f"  normalised {_fmt(result.normalised[name])}"
        print(line + (f"  ({result.ablation})" if name == "necessity" else ""))
    documents = result.documents
    if documents.get("overlap"):
        print(
            f"overlap        {documents['overlap']} scoring documents selected the circuit (--allow-overlap)"
        )
    if result.random_percentile:
        for name, pct in result.random_percentile.items():
            print(f"percentile     {name}: {_fmt(pct)} among {len(result.controls)} controls")
    print(f"time           {result.timing['total_s']:.1f} s")
    print(f"wrote          {path}")
    return 0
