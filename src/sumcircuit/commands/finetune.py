"""``sumcircuit finetune``: full or LoRA fine-tuning (all layers, chosen layers or heads)."""

from __future__ import annotations

import argparse

from sumcircuit.distributed import Processes
from sumcircuit.training import FinetuneConfig, finetune


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err


def _heads(text: str) -> list[tuple[int, int]]:
    pairs = []
    for item in text.split(","):
        layer, sep, head = item.strip().partition(".")
        if not sep or not layer.isdigit() or not head.isdigit():
            raise argparse.ArgumentTypeError(
                f"heads are LAYER.HEAD pairs like 2.1,3.4; got {item!r}"
            )
        pairs.append((int(layer), int(head)))
    return pairs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="full or LoRA fine-tuning on summary tokens",
        description="Fine-tune a model on document->summary pairs (loss on summary tokens only). "
        "Runs under torchrun/accelerate launch for several processes.",
    )
    d = FinetuneConfig()
    p.add_argument("--model", default=d.model, help="preset, local directory or HF id")
    p.add_argument("--data", default=d.data, help="dataset name, local file or hf:NAME")
    p.add_argument("--out", required=True, help="output directory of the run")
    p.add_argument("--method", choices=("full", "lora"), default=d.method)
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--layers", type=_ints, help="LoRA on these layers only, e.g. 2,3,5")
    sel.add_argument("--heads", type=_heads, help="LoRA on these heads only, LAYER.HEAD: 2.1,3.4")
    sel.add_argument("--circuit", help="circuit JSON: adapt its layers (or heads)")
    p.add_argument("--rank", type=int, default=d.rank, help="LoRA rank (default 8)")
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default 2*rank)")
    p.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    p.add_argument(
        "--targets",
        default=",".join(d.targets),
        help="adapted projections, from q,k,v,o,mlp (default q,k,v,o)",
    )
    p.add_argument(
        "--equal-budget",
        action="store_true",
        help="raise the rank so trainable params match LoRA on all layers",
    )
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--limit", type=int, default=None, help="first N training examples")
    p.add_argument("--max-length", type=int, default=d.max_length)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--lr", type=float, default=None, help="peak lr (full 3e-5, lora 2e-4)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=float, default=d.warmup, help="fraction of steps")
    p.add_argument("--schedule", choices=("linear", "cosine"), default=d.schedule)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=d.precision)
    p.add_argument("--template", choices=("plain", "chat"), default=d.template)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-limit", type=int, default=d.val_limit, help="validation docs")
    p.add_argument(
        "--rouge-every-epoch", type=int, default=0, help="ROUGE-L on N validation docs per epoch"
    )
    p.add_argument("--checkpoint-every", type=int, default=0, help="optimizer steps (0: epochs)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N steps (resumable)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a different run in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_finetune)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    return FinetuneConfig(
        model=args.model,
        data=args.data,
        out=args.out,
        method=args.method,
        layers=args.layers,
        heads=args.heads,
        circuit=args.circuit,
        rank=args.rank,
        alpha=args.alpha,
        lora_dropout=args.lora_dropout,
        targets=targets,
        equal_budget=args.equal_budget,
        epochs=args.epochs,
        limit=args.limit,
        max_length=args.max_length,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        schedule=args.schedule,
        precision=args.precision,
        template=args.template,
        seed=args.seed,
        val_limit=args.val_limit,
        rouge_every_epoch=args.rouge_every_epoch,
        checkpoint_every=args.checkpoint_every,
        max_steps=args.max_steps,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )


def cmd_finetune(args: argparse.Namespace) -> int:
    procs = Processes.from_env()  # the group finetune trains in (one process without torchrun)
    try:
        result = finetune(config_from_args(args))
    finally:
        procs.close()
    if not procs.main:
        return 0
    print(f"trainable parameters: {result.trainable_params:,} of {result.total_params:,}")
    if result.budget:
        b = result.budget
        print(
            f"equal budget: rank {b['rank']} -> {b['equal_budget_rank']}; targeted "
            f"{b['targeted_params']:,} vs standard LoRA {b['standard_params']:,} "
            f"(at rank {b['rank']}: {b['targeted_params_at_rank']:,})"
        )
    for e in result.epochs:
        val = f"{e.val_loss:.4f}" if e.val_loss is not None else "-"
        rouge = f", val rougeL {e.val_rougeL:.4f}" if e.val_rougeL is not None else ""
        print(
            f"epoch {e.epoch}: train loss {e.train_loss:.4f}, val loss {val}{rouge}, "
            f"{e.tokens_per_s:.0f} tokens/s, {e.wall_s:.1f} s"
        )
    if not result.complete:
        print(f"stopped after {len(result.step_losses)} steps; continue with --resume")
        return 0
    print(f"wrote {args.out} in {result.wall_s:.1f} s")
    return 0
