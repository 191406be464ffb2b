"""The paper's three claims, tested against a study's numbers.

``holds`` is True or False when the evidence decides, and None when the confidence interval
straddles the threshold (the honest answer with this much data). Every row also carries
``evidence`` (one or two sentences: what decided the verdict, or for an undecided one the smallest
effect the current n can detect and the n that would decide it) and ``evidence_data`` (the
numbers, from :mod:`sumcircuit.study.evidence` and :mod:`sumcircuit.stats`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sumcircuit.stats import binomial_power, topk_bootstrap
from sumcircuit.study import evidence

# Paper: layers 2, 3 and 5 of GPT-2 small's 12 change most — relative depths 0.17-0.42.
PAPER_LAYERS = [2, 3, 5]
PAPER_N_LAYERS = 12
MIDDLE_BAND = (2 / PAPER_N_LAYERS - 0.05, 5 / PAPER_N_LAYERS + 0.05)  # relative depth of a layer
PAPER_FRAC_DECREASED = 0.62
PAPER_PARAM_REDUCTION = 0.75


def relative_depth(layer: int, n_layers: int) -> float:
    """Layer index scaled to [0, 1) so that models of different depth compare (layer / n)."""
    return layer / n_layers


def band_mask(n_layers: int) -> list[bool]:
    """Whether each layer's relative depth lies in :data:`MIDDLE_BAND` (closed; a 1e-9 tolerance
    keeps a layer exactly on an edge, such as 14 of 30, inside)."""
    lo, hi = MIDDLE_BAND
    return [lo - 1e-9 <= relative_depth(layer, n_layers) <= hi + 1e-9 for layer in range(n_layers)]


_NAMES = {"rougeL": "ROUGE-L", "loglik": "held-out log-likelihood"}
_DECIDED = "verdict: holds at >= {:.0%} of resamples, fails at <= {:.0%}"


def _undecided(metric: str, p: dict[str, Any]) -> str:
    needed = p.get("n_needed")
    need = (
        "no n detects the observed difference of 0"
        if needed is None
        else f"the observed {p['mean_diff']:+.3g} would need n ≈ {needed:,}"
    )
    return f"{_NAMES.get(metric, metric)} {p['mde']:.3g} at n = {p['n']} ({need})"


def lora_evidence(
    row: dict[str, Any],
    comparison: dict[str, Any] | None,
    power: dict[str, dict[str, Any]] | None = None,
    vs_random: dict[str, Any] | None = None,
    arm: str = "targeted",
) -> dict[str, Any]:
    """``row`` (from :func:`lora_claim`) with its evidence: per outcome, what the paired CI of
    ``arm`` − standard decided (``comparison``: outcome -> paired difference, as for
    :func:`lora_claim`), for an undecided outcome its minimum detectable effect (``power``:
    outcome -> :func:`~sumcircuit.stats.paired_power`), and the arm's percentile among the
    random-layer draws (``vs_random``: :func:`evidence.targeted_vs_random`)."""
    data = {"comparison": comparison, "power": power or {}, "vs_random": vs_random}
    measured = {m: d for m, d in (comparison or {}).items() if d}
    if not measured:
        return row | {"evidence": "not run", "evidence_data": data}
    sentences = []
    for metric, diff in measured.items():
        name, n = _NAMES.get(metric, metric), diff.get("n")
        verdict = _above_zero(diff)
        if verdict is None:
            text = (
                f"the paired 95% CI of {arm} − standard {name} over {n} test documents includes 0"
            )
            if power and metric in power:
                p = power[metric]
                text += (
                    f"; smallest detectable difference (two-sided α = {p['alpha']:g}, power "
                    f"{p['power']:g}): {_undecided(metric, p)}"
                )
        else:
            side = "above" if verdict else "below"
            text = f"the paired 95% CI of {arm} − standard {name} over {n} test documents lies {side} 0"
        sentences.append(text[0].upper() + text[1:] + ".")
    if vs_random:
        ranks = [
            f"{_NAMES.get(m, m)} at percentile {r['percentile']:.0f} of {len(r['draws'])}"
            for m, r in vs_random.items()
        ]
        sentences.append(f"Among random-layer draws, {arm} ranks: {'; '.join(ranks)}.")
    return row | {"evidence": " ".join(sentences), "evidence_data": data}


def middle_layers_claim(
    layers_ranked: list[int],
    n_layers: int,
    k: int = 3,
    *,
    per_doc_kl: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Do >= 2 of the top-``k`` layers by KL lie in the paper's band of relative depth?

    With ``per_doc_kl`` (n_docs, L) the verdict is the bootstrap support over documents
    (:func:`~sumcircuit.stats.topk_bootstrap`, decided at >= 95% / <= 5%); without it (a diff
    run without --per-doc) the single ranking decides, and ``ours`` says so."""
    top = layers_ranked[:k]
    depths = [round(relative_depth(layer, n_layers), 2) for layer in top]
    band = band_mask(n_layers)
    inside = [i for i, b in enumerate(band) if b]
    where = f"layers {inside[0]}-{inside[-1]} of {n_layers}" if inside else "no layer of this model"
    row = {
        "claim": "the early-middle layers change most (layers 2, 3, 5 of 12)",
        "paper": f"layers {PAPER_LAYERS} of {PAPER_N_LAYERS} (relative depth 0.17-0.42)",
    }
    ours = f"top-{k} layers by KL: {top} of {n_layers} (relative depth {depths})"
    if per_doc_kl is None:
        n_in = sum(band[layer] for layer in top)
        return row | {
            "ours": ours + "; single ranking (the diff has no per-document values, no bootstrap)",
            "holds": n_in >= 2,
            "evidence": (
                f"One ranking without uncertainty: {n_in} of the top {k} lie in the band "
                f"({where}); rerun diff with --per-doc for a bootstrap over documents."
            ),
            "evidence_data": {
                "method": "single ranking",
                "top_k": top,
                "top_k_in_band": n_in,
                "band_layers": inside,
            },
        }
    boot = topk_bootstrap(per_doc_kl, np.asarray(band), k=k, n_boot=n_boot, seed=seed)
    lo, hi = boot["support_ci95"]
    freq = boot["top_k_frequency"]
    often = sorted(range(n_layers), key=lambda layer: (-freq[layer], layer))[: k + 2]
    often_text = ", ".join(f"{layer} ({freq[layer]:.1%})" for layer in often if freq[layer] > 0)
    return row | {
        "ours": ours + f"; >= 2 of the top {k} in the band in {boot['support']:.0%} of resamples",
        "holds": evidence.support_verdict(boot["support"]),
        "evidence": (
            f"In {boot['support']:.1%} of {boot['n_boot']} bootstrap resamples of the "
            f"{boot['n_docs']} documents (Monte Carlo 95% CI {lo:.1%}-{hi:.1%}), at least 2 of the "
            f"top-{k} layers by KL lie in the band ({where}); "
            + _DECIDED.format(evidence.DECIDE, 1 - evidence.DECIDE)
            + f". Most often in the top {k}: layer {often_text}."
        ),
        "evidence_data": {"method": "bootstrap over documents"} | boot,
    }


def entropy_claim(
    frac: float, ci95: list[float], *, n_heads: int | None = None, n_docs: int | None = None
) -> dict[str, Any]:
    """Is the fraction of heads whose mean ΔH < 0 above 0.5? Decided by its bootstrap CI over
    documents; ``n_heads`` adds the binomial minimum detectable departure from 0.5."""
    lo, hi = ci95
    holds = True if lo > 0.5 else False if hi < 0.5 else None
    binomial = binomial_power(frac, n_heads) if n_heads else None
    docs = f"{n_docs} documents" if n_docs else "documents"
    if holds is None:
        text = f"The bootstrap 95% CI over {docs} includes 50%"
        if binomial:
            needed = binomial["n_needed"]
            need = (
                "the observed fraction is exactly 50%"
                if needed is None
                else f"the observed {binomial['departure']:+.1%} would need {needed:,} heads"
            )
            text += (
                f"; counting heads as independent draws, {n_heads} heads detect a departure from "
                f"50% of at least {binomial['mde']:.1%} (two-sided α = 0.05, power 0.8), {need}"
            )
        text += "."
    else:
        side = "above" if holds else "below"
        text = f"The bootstrap 95% CI over {docs} lies entirely {side} 50%."
    return {
        "claim": "most attention heads lose entropy after fine-tuning (62%)",
        "paper": f"{PAPER_FRAC_DECREASED:.0%} of heads",
        "ours": f"{frac:.0%} of heads (95% CI {lo:.0%}-{hi:.0%})",
        "holds": holds,
        "evidence": text,
        "evidence_data": {
            "method": "bootstrap over documents",
            "fraction": frac,
            "ci95": [lo, hi],
            "n_docs": n_docs,
            "n_heads": n_heads,
            "binomial": binomial,
        },
    }


#: The test outcomes the LoRA claim is decided on, and how the claim row names them.
LORA_METRICS = {"rougeL": "ROUGE-L", "loglik": "log-likelihood per reference token"}


def _above_zero(diff: dict[str, Any]) -> bool | None:
    """True when a paired difference's 95% CI lies above 0, False below, None across it."""
    lo, hi = diff["ci95"]
    return True if lo > 0 else False if hi < 0 else None


def _not_below(diff: dict[str, Any]) -> bool:
    """True when a paired difference's 95% CI reaches 0 or above (not significantly below),
    False when it lies below 0: "reaches", a non-inferiority test without a margin."""
    return diff["ci95"][1] >= 0


def _measured(comparison: dict[str, Any] | None) -> dict[str, Any]:
    """The outcomes of ``LORA_METRICS`` a paired comparison with standard LoRA measured."""
    return {m: d for m, d in (comparison or {}).items() if m in LORA_METRICS and d}


def _combined(verdicts: dict[str, bool | None]) -> bool | None:
    """False when any outcome's verdict is False, True when all are True, else None."""
    values = list(verdicts.values())
    return False if False in values else True if all(values) else None


def _against_standard(
    arm: dict[str, Any], standard: dict[str, Any], measured: dict[str, Any]
) -> list[str]:
    """Each outcome of ``arm`` against standard LoRA with its paired difference and CI (an
    outcome not measured: results evaluated before it existed)."""
    parts = []
    for metric, name in LORA_METRICS.items():
        if metric not in measured:
            parts.append(f"{name} not measured (re-run evaluate)")
            continue
        diff, (lo, hi) = measured[metric]["mean_diff"], measured[metric]["ci95"]
        parts.append(
            f"{name} {arm[metric]:.3f} vs {standard[metric]:.3f} (difference {diff:+.3f}, "
            f"95% CI {lo:+.3f} to {hi:+.3f})"
        )
    return parts


def lora_claim(lora: dict[str, Any], comparison: dict[str, Any] | None) -> dict[str, Any]:
    """Targeted LoRA beats standard LoRA, with fewer epochs and ~75% fewer parameters.

    ``comparison`` is the summary's ``comparisons["vs_standard"]["targeted"]``: per outcome
    (``LORA_METRICS``: test ROUGE-L and the held-out log-likelihood per reference token) the
    paired bootstrap difference targeted − standard, or None for an outcome that was not
    measured. Each measured outcome gets its own verdict, ``verdicts[metric]``: True when the
    difference's 95% CI lies above 0, False when below, None when it straddles 0. An outcome not
    measured (results evaluated before the log-likelihood existed) is left out of ``verdicts``.
    ``holds`` combines them: False when any verdict is False (targeted is worse on some
    outcome), True when every verdict is True, else None (undecided).
    """
    standard, targeted = lora.get("standard"), lora.get("targeted")
    row = {
        "claim": "targeted LoRA beats standard LoRA with fewer epochs and ~75% fewer parameters",
        "paper": "higher ROUGE, fewer epochs, 3 of 12 layers (~75% fewer trainable parameters)",
    }
    measured = _measured(comparison)
    if not standard or not targeted or not measured:
        return row | {"ours": "not run", "holds": None, "verdicts": {}}
    verdicts = {m: _above_zero(d) for m, d in measured.items()}
    holds = _combined(verdicts)
    parts = _against_standard(targeted, standard, measured)
    reduction = 1 - targeted["trainable_params"] / standard["trainable_params"]
    step, total = targeted.get("steps_to_target"), targeted.get("total_steps")
    score = {"val_rougeL": "validation ROUGE-L", "val_loss": "validation loss"}.get(
        targeted.get("target_metric", "val_rougeL"), "validation ROUGE-L"
    )
    reached = f"at step {step} of {total}" if step is not None else "never"
    ours = (
        f"{'; '.join(parts)}; {reduction:.0%} fewer trainable parameters; "
        f"reached standard's final {score} {reached}"
    )
    if score != "validation loss" and "steps_to_target_loss" in targeted:
        step = targeted["steps_to_target_loss"]
        ours += f", its validation loss {f'at step {step}' if step is not None else 'never'}"
    return row | {"ours": ours, "holds": holds, "verdicts": verdicts}


#: The arm that trains the placement curve's best locator (study/arms.py).
ADAPT_ARM = "targeted-adapt"


def adapt_claim(
    lora: dict[str, Any], comparison: dict[str, Any] | None, chosen: dict[str, Any] | None
) -> dict[str, Any]:
    """Targeted LoRA on the best adaptation locator reaches standard LoRA.

    ``chosen``: the placement curve's row the arm trained (the locator that closed the most gap
    at the circuit's size, on the curve's documents). Decided on the test documents, as the
    target reads ("reach standard LoRA within its CI"): per outcome of ``comparison``
    (``targeted-adapt`` − standard, paired), True when the 95% CI reaches 0 (not significantly
    below standard), False when it lies below; ``holds`` False when any outcome fails, True
    when all hold. The text gives the CI, so a wide one that only "reaches" shows as such."""
    row = {
        "claim": "targeted LoRA on the best adaptation locator reaches standard LoRA",
        "paper": "not tested by the paper (its targeted LoRA used the changed layers); the "
        "placement curve picks the layers",
    }
    standard, adapted = lora.get("standard"), lora.get(ADAPT_ARM)
    measured = _measured(comparison)
    if not standard or not adapted or not measured or not chosen:
        return row | {"ours": "not run", "holds": None, "verdicts": {}}
    verdicts = {m: _not_below(d) for m, d in measured.items()}
    holds = _combined(verdicts)
    parts = _against_standard(adapted, standard, measured)
    glo, ghi = chosen["gap_closed_ci95"]
    reduction = 1 - adapted["trainable_params"] / standard["trainable_params"]
    ours = (
        f"{chosen['locator']}'s top {chosen['k']} layers {chosen['layers']} (closed "
        f"{chosen['gap_closed']:+.2f} of the gap on the placement curve, 95% CI {glo:+.2f} to "
        f"{ghi:+.2f}; percentile {chosen['percentile']:.0f} among its random sets): "
        f"{'; '.join(parts)}; {reduction:.0%} fewer trainable parameters"
    )
    return row | {"ours": ours, "holds": holds, "verdicts": verdicts}
