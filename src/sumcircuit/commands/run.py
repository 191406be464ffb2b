"""``sumcircuit run``: every stage, resumable, ending in ``RUN/summary.json`` and ``RUN/report.html``."""

from __future__ import annotations

import argparse
import json

from sumcircuit.errors import SumcircuitError
from sumcircuit.study.config import DEFAULT_PRESET, PRESETS, SECTIONS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="the whole study: finetune, diff, locate, validate, LoRA arms, evaluate, report",
        description=(
            "Run (or resume) the whole study into --out. Finished stages with unchanged options "
            "are skipped, so an interrupted run continues where it stopped. Precedence: flags > "
            f"--set > --config YAML > --preset (default: {DEFAULT_PRESET}) > defaults. Every "
            "value is checked before the first stage, and a second run on the same --out is "
            "refused while the first is alive."
        ),
    )
    parser.add_argument("--out", help="run directory (required unless --print-config)")
    parser.add_argument("--config", help=f"study YAML (sections: {', '.join(SECTIONS)})")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help=f"quick (9-14 min on the 2-core CPUs measured), standard (40-60 min, sized to decide "
        f"the claims), paper, or placement (quick plus the adapt stage, the placement curve and its "
        f"two arms); without --preset (or a preset in --config) the "
        f"{DEFAULT_PRESET} preset's sizes run",
    )
    parser.add_argument("--model", help="base model: preset, local directory or Hugging Face id")
    parser.add_argument(
        "--finetuned",
        metavar="PATH_OR_ID",
        help="analyse this existing fine-tune of --model (directory or Hugging Face id) instead "
        "of fine-tuning: the finetune stage is skipped; checked against --model first",
    )
    parser.add_argument("--data", help="dataset name, local file or hf:NAME")
    parser.add_argument(
        "--max-length", type=int, help="tokens per example (documents are truncated)"
    )
    parser.add_argument("--seeds", help="comma-separated seeds for the LoRA arms, e.g. 0,1,2")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one option, e.g. --set lora.epochs=2 (repeatable)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a different study in --out"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved, checked config (every option of every section) and exit",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sumcircuit.study.config import build_config
    from sumcircuit.study.run import run_study

    overrides = {
        "model": args.model,
        "finetuned": args.finetuned,
        "data": args.data,
        "max_length": args.max_length,
        "seeds": args.seeds,  # "0,1,2": checked with the rest of the config
    }
    config = build_config(
        preset=args.preset,
        config_file=args.config,
        overrides=overrides,
        sets=args.set,
        default_preset=DEFAULT_PRESET,
    )
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if not args.out:
        raise SumcircuitError("--out is required: the run directory to write the study to")
    report = run_study(config, args.out, overwrite=args.overwrite)
    print(f"summary: {report.parent / 'summary.json'}")
    print(f"report:  {report}")
    return 0
