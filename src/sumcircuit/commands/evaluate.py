"""``sumcircuit evaluate --model M [--adapter DIR] --data D --split test --out FILE``."""

from __future__ import annotations

import argparse

from sumcircuit.evaluation.rouge import METRICS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="generate summaries for a split and score them with ROUGE (bootstrap 95%% CIs)",
        description=(
            "Generate a summary per example (batched, KV cache, greedy unless --num-beams) and "
            "score it with ROUGE-1/2/L/Lsum. Writes FILE (JSON) and FILE's .predictions.jsonl."
        ),
    )
    parser.add_argument("--model", default="smollm2-135m", help="preset, local dir or HF id")
    parser.add_argument("--adapter", default=None, help="LoRA adapter directory (finetune --out)")
    parser.add_argument("--data", default="xsum", help="dataset name, file or hf:NAME")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--out", required=True, help="result JSON file")
    parser.add_argument("--limit", type=int, default=None, help="first N examples of the split")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts generated together")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="summary cap in tokens")
    parser.add_argument("--num-beams", type=int, default=1, help="1 = greedy (default)")
    parser.add_argument("--max-length", type=int, default=512, help="prompt + summary tokens")
    parser.add_argument("--template", choices=("plain", "chat"), default="plain")
    parser.add_argument(
        "--no-stop-at-newline",
        dest="stop_at_newline",
        action="store_false",
        help="let summaries run past their first newline (multi-sentence data)",
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast during generation")
    parser.add_argument("--seed", type=int, default=0, help="seed of torch and the bootstrap")
    parser.add_argument("--document-field", default="document", help="document column")
    parser.add_argument("--summary-field", default="summary", help="summary column")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sumcircuit.evaluation.evaluate import EvaluateConfig, evaluate, predictions_path

    config = EvaluateConfig(
        model=args.model,
        adapter=args.adapter,
        data=args.data,
        split=args.split,
        out=args.out,
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        max_length=args.max_length,
        template=args.template,
        stop_at_newline=args.stop_at_newline,
        bf16=args.bf16,
        seed=args.seed,
        document_field=args.document_field,
        summary_field=args.summary_field,
    )
    result = evaluate(config)
    model = args.model + (f" + adapter {args.adapter}" if args.adapter else "")
    print(f"{model} on {args.data}/{args.split}: n={result.n}, {result.wall_s:.1f} s")
    for metric in METRICS:
        score = result.scores[metric]
        lo, hi = score["ci95"]
        print(f"  {metric:<10} {score['f']:.4f}  95% CI [{lo:.4f}, {hi:.4f}]")
    print(f"wrote {args.out} and {predictions_path(args.out)}")
    return 0
