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
            "generate summaries for a split and score them with ROUGE and the loop rate, and the "
            "references' log-likelihood (bootstrap 95%% CIs)"
        ),
        description=(
            "Generate a summary per example (batched, KV cache, greedy unless --num-beams; "
            "--no-repeat-ngram-size and --repetition-penalty as in transformers) and score it "
            "with ROUGE-1/2/L/Lsum and the loop rate (the share of summaries in which some "
            "3-gram of lowercased whitespace words occurs twice); also score the reference "
            "summary's mean log-likelihood per token after the same prompt, from the same "
            "prefill (teacher-forced; --no-loglik skips it, --no-generate scores it alone). "
            "Writes FILE (JSON) and FILE's .predictions.jsonl."
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
    if result.generated:
        for metric in METRICS:
            score = result.scores[metric]
            lo, hi = score["ci95"]
            print(f"  {metric:<10} {score['f']:.4f}  95% CI [{lo:.4f}, {hi:.4f}]")
    if result.loop_rate is not None:
        rate, (lo, hi) = result.loop_rate["rate"], result.loop_rate["ci95"]
        print(
            f"  {'loop rate':<10} {rate:.4f}  95% CI [{lo:.4f}, {hi:.4f}]  "
            f"({result.loop_rate['n_loops']} of {result.n} summaries repeat a word "
            f"{result.loop_rate['ngram']}-gram)"
        )
    if result.loglik is not None:
        lo, hi = result.loglik["ci95"]
        print(
            f"  {'loglik':<10} {result.loglik['mean']:.4f}  95% CI [{lo:.4f}, {hi:.4f}]"
            "  (mean log-likelihood per reference token)"
        )
    print(f"wrote {args.out} and {predictions_path(args.out)}")
    return 0
