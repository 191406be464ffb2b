"""The paper's three claims, tested against a study's numbers.

``holds`` is True or False when the evidence decides, and None when the confidence interval
straddles the threshold (the honest answer with this much data).
"""

from __future__ import annotations

from typing import Any

# Paper: layers 2, 3 and 5 of GPT-2 small's 12 change most — relative depths 0.17-0.42.
PAPER_LAYERS = [2, 3, 5]
PAPER_N_LAYERS = 12
MIDDLE_BAND = (2 / PAPER_N_LAYERS - 0.05, 5 / PAPER_N_LAYERS + 0.05)  # relative depth of a layer
PAPER_FRAC_DECREASED = 0.62
PAPER_PARAM_REDUCTION = 0.75


def relative_depth(layer: int, n_layers: int) -> float:
    """Layer index scaled to [0, 1) so that models of different depth compare (layer / n)."""
    return layer / n_layers


def middle_layers_claim(layers_ranked: list[int], n_layers: int, k: int = 3) -> dict[str, Any]:
    top = layers_ranked[:k]
    depths = [round(relative_depth(layer, n_layers), 2) for layer in top]
    inside = sum(MIDDLE_BAND[0] <= d <= MIDDLE_BAND[1] for d in depths)
    return {
        "claim": "the early-middle layers change most (layers 2, 3, 5 of 12)",
        "paper": f"layers {PAPER_LAYERS} of {PAPER_N_LAYERS} (relative depth 0.17-0.42)",
        "ours": f"top-{k} layers by KL: {top} of {n_layers} (relative depth {depths})",
        "holds": inside >= 2,
    }


def entropy_claim(frac: float, ci95: list[float]) -> dict[str, Any]:
    lo, hi = ci95
    holds = True if lo > 0.5 else False if hi < 0.5 else None
    return {
        "claim": "most attention heads lose entropy after fine-tuning (62%)",
        "paper": f"{PAPER_FRAC_DECREASED:.0%} of heads",
        "ours": f"{frac:.0%} of heads (95% CI {lo:.0%}-{hi:.0%})",
        "holds": holds,
    }


def lora_claim(lora: dict[str, Any], comparison: dict[str, Any] | None) -> dict[str, Any]:
    """Targeted LoRA beats standard LoRA, with fewer epochs and ~75% fewer parameters."""
    standard, targeted = lora.get("standard"), lora.get("targeted")
    row = {
        "claim": "targeted LoRA beats standard LoRA with fewer epochs and ~75% fewer parameters",
        "paper": "higher ROUGE, fewer epochs, 3 of 12 layers (~75% fewer trainable parameters)",
    }
    if not standard or not targeted or comparison is None:
        return row | {"ours": "not run", "holds": None}
    reduction = 1 - targeted["trainable_params"] / standard["trainable_params"]
    diff, (lo, hi) = comparison["mean_diff"], comparison["ci95"]
    better = True if lo > 0 else False if hi < 0 else None
    step, total = targeted.get("steps_to_target"), targeted.get("total_steps")
    score = {"val_rougeL": "validation ROUGE-L", "val_loss": "validation loss"}.get(
        targeted.get("target_metric", "val_rougeL"), "validation ROUGE-L"
    )
    reached = f"at step {step} of {total}" if step is not None else "never"
    ours = (
        f"ROUGE-L {targeted['rougeL']:.3f} vs {standard['rougeL']:.3f} (difference {diff:+.3f}, "
        f"95% CI {lo:+.3f} to {hi:+.3f}); {reduction:.0%} fewer trainable parameters; "
        f"reached standard's final {score} {reached}"
    )
    return row | {"ours": ours, "holds": better}
