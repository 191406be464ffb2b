"""``sumcircuit export-peft CIRCUIT --out DIR``: the circuit as a peft LoraConfig (or a
placement curve's top-k layers, ``--placement DIR --k K``, or a LoRA run's layers and per-layer
ranks, ``--run DIR``)."""

from __future__ import annotations

import argparse

from sumcircuit.cli_config import ConfigFlags
from sumcircuit.training.peft_export import PeftExportConfig, export_peft

FLAGS = ConfigFlags(PeftExportConfig, skip=("circuit",), required=("out",))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-peft",
        help="write a peft LoraConfig (adapter_config.json) that adapts the circuit's layers",
        description=(
            "Write DIR/adapter_config.json: a peft LoraConfig with the architecture's LoRA "
            "modules on the circuit's layers, for LoraConfig.from_pretrained(DIR) and "
            "get_peft_model in any training script. A head circuit exports the layers of its "
            "heads (peft cannot restrict LoRA to heads). Instead of a circuit: --placement DIR "
            "--k K [--locator NAME] exports a placement curve's top-k layers (default: the "
            "locator that closed the most gap at k); --run DIR exports what a LoRA run adapted "
            "(layers_to_transform, and rank_pattern/alpha_pattern for per-layer ranks) with that "
            "run's rank, alpha and targets."
        ),
    )
    parser.add_argument(
        "circuit",
        metavar="CIRCUIT",
        nargs="?",
        default="",
        help="circuit.json or the folder holding it (or use --placement / --run)",
    )
    FLAGS.add_to(parser)
    parser.set_defaults(func=cmd_export_peft)


def cmd_export_peft(args: argparse.Namespace) -> int:
    export = export_peft(FLAGS.build(args, circuit=args.circuit))
    lora = export.lora_config
    print(
        f"LoRA r={lora.r} alpha={lora.lora_alpha:g} dropout={lora.lora_dropout:g} on layers "
        f"{export.layers}: {', '.join(export.target_modules)}"
    )
    if export.layer_ranks:
        print(f"per-layer ranks (rank_pattern): {export.layer_ranks}")
    for note in export.notes:
        print(f"note: {note}")
    print(f"wrote {args.out}/adapter_config.json (LoraConfig.from_pretrained reads it)")
    return 0
