"""``sumcircuit validate``: causal test of a circuit by activation patching, with random controls."""

from __future__ import annotations

import argparse
from pathlib import Path

from sumcircuit.analysis.patching import ABLATIONS, DTYPES, PairConfig


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every patching command shares (models, data, batching, seed)."""
    defaults = PairConfig.__dataclass_fields__
    parser.add_argument("--base", default=defaults["base"].default, help="base model")
    parser.add_argument("--finetuned", required=True, help="fine-tuned model (dir or HF id)")
    parser.add_argument("--data", default=defaults["data"].default, help="dataset")
    parser.add_argument("--split", default=defaults["split"].default, help="split")
    parser.add_argument("--limit", type=int, default=None, help="first N documents")
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"].default)
    parser.add_argument("--max-length", type=int, default=defaults["max_length"].default)
    parser.add_argument("--template", default="plain", choices=("plain", "chat"))
    parser.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of controls and bootstrap")
    parser.add_argument("--out", required=True, type=Path, help="output directory")


def pair_kwargs(args: argparse.Namespace) -> dict:
    return {
        "base": args.base,
        "finetuned": args.finetuned,
        "data": args.data,
        "split": args.split,
        "limit": args.limit,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "template": args.template,
        "dtype": args.dtype,
        "device": args.device,
        "seed": args.seed,
    }


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
    add_pair_arguments(parser)
    parser.add_argument("--circuit", required=True, help="circuit JSON written by locate")
    parser.add_argument("--controls", type=int, default=20, help="random sets of the same size")
    parser.add_argument("--ablation", default="patch", choices=ABLATIONS, help="necessity source")
    parser.set_defaults(func=cmd_validate)


def _fmt(measure: dict) -> str:
    lo, hi = measure["ci95"]
    return f"{measure['value']:.3f}  [95% CI {lo:.3f}, {hi:.3f}]"


def cmd_validate(args: argparse.Namespace) -> int:
    from sumcircuit.analysis.validate import ValidateConfig, validate

    config = ValidateConfig(
        **pair_kwargs(args),
        circuit=args.circuit,
        controls=args.controls,
        ablation=args.ablation,
    )
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
