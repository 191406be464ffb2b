"""``sumcircuit placement``: where LoRA helps most — each locator's top-k layers against random
k-layer sets, standard LoRA and the base model, on held-out documents."""

from __future__ import annotations

import argparse

from sumcircuit.analysis.placement.config import PlacementConfig
from sumcircuit.analysis.placement.result import BASE, PlacementResult
from sumcircuit.cli_config import ConfigFlags

FLAGS = ConfigFlags(PlacementConfig, required=("out",))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "placement",
        help="the placement curve: LoRA on each locator's top-k layers vs random k-layer sets",
        description=(
            "For each locator (the diff's, --sources NAME=DIR for any other registered layer "
            "locator, the position baselines) and each k of --sizes, train LoRA on its top-k "
            "layers, on --random-sets random k-layer sets and on every layer (standard), all "
            "with the same rank, targets, pairs, steps, lr and seed; score each, and the base "
            "model, by the held-out log-likelihood per reference token on documents no locator "
            "and no training run read. Prints each locator's log-likelihood, percentile among "
            "the random sets and the share of the gap to standard LoRA it closes, with bootstrap "
            "CIs; writes OUT/placement.json and OUT/placement.png/.svg. Runs are kept in "
            "OUT/runs (a rerun skips finished ones)."
        ),
    )
    FLAGS.add_to(parser)
    parser.set_defaults(func=cmd_placement)


def cmd_placement(args: argparse.Namespace) -> int:
    from sumcircuit.analysis.placement.run import placement
    from sumcircuit.report.placement_plots import plot_placement

    config = FLAGS.build(args)
    result = placement(config)
    path = result.save(config.out)
    figures = plot_placement(config.out)
    print(format_table(result))
    print(f"time {result.wall_s:.0f} s; wrote {path}, {', '.join(map(str, figures))}")
    return 0


def format_table(result: PlacementResult) -> str:
    """The curve as text: references, then per view and k the random band and each locator."""
    outcome = result.documents["outcome"]
    base, full = result.reference(BASE), result.reference("all")
    lines = [
        f"outcome: {outcome['n']} {outcome['split']} documents from #{outcome['offset']} "
        "(held-out log-likelihood per reference token, 95% CI)",
        f"base model        {_ll(base)}",
        f"standard (all {result.n_layers} layers, rank {result.rank})  {_ll(full)}  "
        f"{full['trainable_params']:,} params",
    ]
    header = (
        f"{'view':9s} {'locator':14s} {'k':>2s}  {'layers':18s} {'log-lik [95% CI]':30s} "
        f"{'gap closed [95% CI]':24s} {'pctl':>5s} {'params':>10s}"
    )
    frame = result.to_frame()
    for (view, k), rows in frame.groupby(["view", "k"], sort=False):
        band = result.band(int(k), view)
        lines += [
            "",
            header,
            f"{view:9s} {'random':14s} {k:>2d}  mean of {len(band['runs'])} sets "
            f"{band['mean']:.4f} (min {min(band['loglik']):.4f}, max {max(band['loglik']):.4f})",
        ]
        for row in rows.itertuples():
            lo, hi = row.loglik_ci95
            glo, ghi = row.gap_closed_ci95
            lines.append(
                f"{view:9s} {row.locator:14s} {k:>2d}  {_layers(row.layers):18s} "
                f"{row.loglik:.4f} [{lo:.4f}, {hi:.4f}]  {row.gap_closed:+.2f} [{glo:+.2f}, "
                f"{ghi:+.2f}]      {row.percentile:5.0f} {row.trainable_params:>10,d}"
            )
    if result.single_layer:
        rho = ", ".join(
            f"{k} {v:+.2f}" for k, v in result.single_layer["spearman"].items() if v is not None
        )
        lines += ["", f"Spearman with each layer alone: {rho}"]
    return "\n".join(lines)


def _ll(run: dict) -> str:
    lo, hi = run["loglik_ci95"]
    return f"{run['loglik']:.4f} [{lo:.4f}, {hi:.4f}]"


def _layers(layers: list[int]) -> str:
    text = ",".join(map(str, layers))
    return text if len(text) <= 18 else text[:15] + "..."
