"""``sumcircuit finetune``: full or LoRA fine-tuning (all layers, chosen layers or heads)."""

from __future__ import annotations

import argparse

from sumcircuit.cli_config import ConfigFlags
from sumcircuit.distributed import Processes
from sumcircuit.models.trained import CurvePoint
from sumcircuit.training import FinetuneConfig, finetune

FLAGS = ConfigFlags(FinetuneConfig, required=("out",))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="full or LoRA fine-tuning on summary tokens",
        description="Fine-tune a model on document->summary pairs (loss on summary tokens only). "
        "Runs under torchrun/accelerate launch for several processes. Give at most one of "
        "--layers, --heads and --circuit.",
    )
    FLAGS.add_to(p)
    p.set_defaults(func=cmd_finetune)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    return FLAGS.build(args)


def cmd_finetune(args: argparse.Namespace) -> int:
    procs = Processes.from_env()  # the group finetune trains in (one process without torchrun)
    try:
        result = finetune(config_from_args(args))
    finally:
        procs.close()
    if not procs.main:
        return 0
    print(f"trainable parameters: {result.trainable_params:,} of {result.total_params:,}")
    b = result.budget
    if "layer_ranks" in b:
        print(f"per-layer ranks {b['layer_ranks']} (others {b['rank']}): {b['params']:,} entries")
    elif b:
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
    if result.curve:
        print("curve, step: val loss[/rougeL]: " + ", ".join(map(_point, result.curve)))
    if not result.complete:
        print(f"stopped after {len(result.step_losses)} steps; continue with --resume")
        return 0
    resumed = (
        f" ({result.process_wall_s:.1f} s in this process, resumed at step {result.resumed_at_step})"
        if result.resumed_at_step and result.process_wall_s is not None
        else ""
    )
    print(f"precision {result.precision_used}; wrote {args.out} in {result.wall_s:.1f} s{resumed}")
    return 0


def _point(p: CurvePoint) -> str:
    loss = f"{p.val_loss:.4f}" if p.val_loss is not None else "-"
    return f"{p.step}: {loss}" + (f"/{p.val_rougeL:.4f}" if p.val_rougeL is not None else "")
