"""``sumcircuit evaluate --model M [--adapter DIR] --data D --split test --out FILE``."""

from __future__ import annotations

import argparse

from sumcircuit.cli_config import ConfigFlags
from sumcircuit.evaluation.evaluate import EvalResult, EvaluateConfig, evaluate, predictions_path
from sumcircuit.evaluation.rouge import METRICS
from sumcircuit.io import check_writable_file

FLAGS = ConfigFlags(EvaluateConfig, required=("out",))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help=(
            "generate summaries for a split and score them with ROUGE, and the references' "
            "log-likelihood (bootstrap 95%% CIs)"
        ),
        description=(
            "Generate a summary per example (batched, KV cache, greedy unless --num-beams) and "
            "score it with ROUGE-1/2/L/Lsum; also score the reference summary's mean "
            "log-likelihood per token after the same prompt (teacher-forced; --no-loglik skips "
            "it). Writes FILE (JSON) and FILE's .predictions.jsonl."
        ),
    )
    FLAGS.add_to(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = FLAGS.build(args)
    check_writable_file(EvalResult.path(config.out))
    result = evaluate(config)
    model = args.model + (f" + adapter {args.adapter}" if args.adapter else "")
    print(f"{model} on {args.data}/{args.split}: n={result.n}, {result.wall_s:.1f} s")
    for metric in METRICS:
        score = result.scores[metric]
        lo, hi = score["ci95"]
        print(f"  {metric:<10} {score['f']:.4f}  95% CI [{lo:.4f}, {hi:.4f}]")
    if result.loglik is not None:
        lo, hi = result.loglik["ci95"]
        print(
            f"  {'loglik':<10} {result.loglik['mean']:.4f}  95% CI [{lo:.4f}, {hi:.4f}]"
            "  (mean log-likelihood per reference token)"
        )
    print(f"wrote {args.out} and {predictions_path(args.out)}")
    return 0
