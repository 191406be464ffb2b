"""``RUN/summary.json``: every stage's headline numbers, the LoRA table and the paper's claims.

Reads the stages' outputs only through their result classes' ``load``, computes the numbers and
saves them as a :class:`~sumcircuit.report.summary_result.StudySummary`; the report's figures
are drawn in ``report/`` (:func:`~sumcircuit.report.figures.draw_study_figures`). Two test
outcomes per model: ROUGE of its generated summaries, and the held-out log-likelihood per
reference-summary token (``loglik``, see :mod:`sumcircuit.evaluation.loglik`); beside ROUGE, the
loop rate of its summaries (``loop_rate``, :mod:`sumcircuit.evaluation.loops`). With several
seeds, each arm's per-example scores are first averaged over seeds, then bootstrapped over
examples; every model is compared to the standard arm and to the base model by a paired
bootstrap over the same test examples (``comparisons``). A model evaluated before ``loglik``
existed has it as None.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sumcircuit.analysis.causal.agreement import attribution_vs_exact
from sumcircuit.analysis.causal.attribute import AttributionResult
from sumcircuit.analysis.causal.exact import ExactResult
from sumcircuit.analysis.causal.faithfulness_result import FaithfulnessResult
from sumcircuit.analysis.causal.validate import ValidateResult
from sumcircuit.analysis.diff.result import DiffResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.placement.result import PlacementResult
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.evaluate import LOGLIK, LOOP_RATE, LOOPS, EvalResult
from sumcircuit.evaluation.rouge import METRICS, aggregate
from sumcircuit.layout import RunLayout
from sumcircuit.models.trained import TrainingResult, final_value, steps_to_target
from sumcircuit.provenance import provenance
from sumcircuit.report.figures import draw_study_figures, untrusted_advice
from sumcircuit.report.summary_result import StudySummary
from sumcircuit.stats import bootstrap_ci, paired_bootstrap_diff, paired_power
from sumcircuit.study import claims, evidence
from sumcircuit.study.config import StudyConfig
from sumcircuit.study.external import ExternalFinetune
from sumcircuit.study.stages import StageRunner

log = logging.getLogger(__name__)

N_EXAMPLES = 3  # example summaries shown in the report
SCORES = (*METRICS, LOGLIK, LOOPS)  # per-example scores of an evaluated model
COMPARED = ("rougeL", LOGLIK)  # the outcomes models are compared on
REFERENCES = ("standard", "base")  # comparisons[f"vs_{reference}"][model] = model - reference
BASE, FULL = RunLayout.BASE_EVAL, RunLayout.FULL_EVAL  # the models that are not a LoRA arm


def _eval_key(name: str, seed: int) -> str:
    """The evaluation of a model: ``base``, ``full`` or an arm's run of ``seed``."""
    return name if name in (BASE, FULL) else RunLayout.run_key(name, seed)


def _predictions(layout: RunLayout, key: str) -> pd.DataFrame:
    """Per-example predictions and ROUGE of one evaluate stage, indexed by id."""
    return EvalResult.load(layout / layout.evaluate(key)).predictions.set_index("id")


def _per_example(layout: RunLayout, keys: list[str]) -> pd.DataFrame:
    """Per-example ROUGE, loglik and loops averaged over the given evaluate stages (seeds),
    indexed by id (NaN where any seed lacks it; loops: the share of seeds whose summary loops)."""
    frames = [_predictions(layout, key)[list(SCORES)] for key in keys]
    return sum(frames[1:], frames[0]) / len(frames)


def _to_target(standard: list[dict[str, Any]]) -> tuple[str, float | None]:
    """The standard arm's final validation score, seed-mean, that other arms must reach:
    ROUGE-L, or the validation loss when ROUGE was off. Returns ``(curve key, target)``."""
    curves = [r.get("curve", []) for r in standard]
    key = "val_rougeL" if final_value(curves, "val_rougeL") is not None else "val_loss"
    return key, final_value(curves, key)


def _steps_to(runs: list[dict[str, Any]], key: str, target: float | None) -> int | None:
    """First step at which the seed-mean validation ``key`` of ``runs`` reaches ``target``."""
    if target is None:
        return None
    curves = [r.get("curve", []) for r in runs]
    return steps_to_target(curves, target, key=key, higher_is_better=key == "val_rougeL")


def _full_training(folder: Path) -> dict[str, Any]:
    """The full fine-tune's training columns; an external fine-tune has none, only its identity."""
    if ExternalFinetune.exists(folder):
        external = ExternalFinetune.load(folder)
        return {
            "trainable_params": None,
            "epochs": None,
            "steps_to_target": None,
            "total_steps": None,
            "wall_s": None,
            "external": {"path": external.path, "sha256": external.identity.get("sha256")},
        }
    training = TrainingResult.load(folder).to_dict()
    return {
        "trainable_params": training["trainable_params"],
        "epochs": len(training["epochs"]),
        "steps_to_target": None,
        "total_steps": len(training["step_losses"]),
        "wall_s": training["wall_s"],
    }


def score_row(frame: pd.DataFrame, seed: int) -> dict[str, Any]:
    """A model's test scores from its per-example frame (``SCORES`` columns): mean F1 per ROUGE
    metric, ``rougeL_ci95``, ``loop_rate`` with ``loop_rate_ci95``, and ``loglik`` with
    ``loglik_ci95``; None when not measured (ROUGE and loop rate: evaluated with
    ``--no-generate``); 95% bootstrap CIs over examples, seeded."""
    row: dict[str, Any] = dict.fromkeys(METRICS) | {"rougeL_ci95": None}
    if len(frame) and np.isfinite(frame[list(METRICS)].to_numpy(dtype=float)).all():
        agg = aggregate(frame.reset_index(), seed=seed)
        row = {m: agg[m]["f"] for m in METRICS} | {"rougeL_ci95": agg["rougeL"]["ci95"]}
    for name, column in ((LOOP_RATE, LOOPS), (LOGLIK, LOGLIK)):
        row[name], row[f"{name}_ci95"] = None, None
        values = frame[column].to_numpy(dtype=float)
        if len(values) and np.isfinite(values).all():
            lo, hi = bootstrap_ci(values, seed=seed)
            row[name], row[f"{name}_ci95"] = float(values.mean()), [lo, hi]
    return row


def paired_differences(
    frame: pd.DataFrame, reference: pd.DataFrame, seed: int
) -> dict[str, dict[str, Any] | None]:
    """Paired bootstrap of model − reference per ``COMPARED`` outcome over the reference's
    examples: ``{metric: {"mean_diff", "ci95", "p_value", "n"}}``, None for an outcome that one
    of the two lacks."""
    frame = frame.loc[reference.index]
    out: dict[str, dict[str, Any] | None] = {}
    for metric in COMPARED:
        a, b = frame[metric].to_numpy(dtype=float), reference[metric].to_numpy(dtype=float)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            out[metric] = None
            continue
        d = paired_bootstrap_diff(a, b, seed=seed)
        out[metric] = {
            "mean_diff": d.mean_diff,
            "ci95": list(d.ci95),
            "p_value": d.p_value,
            "n": d.n,
        }
    return out


def comparisons(frames: dict[str, pd.DataFrame], seed: int) -> dict[str, dict[str, Any]]:
    """``{"vs_standard": {model: paired_differences}, "vs_base": {...}}`` for every model in
    ``frames`` but the reference itself (a reference that was not run has no entry)."""
    return {
        f"vs_{ref}": {
            name: paired_differences(frame, frames[ref], seed)
            for name, frame in frames.items()
            if name != ref
        }
        for ref in REFERENCES
        if ref in frames
    }


def _paired_power(
    frames: dict[str, pd.DataFrame], arm: str = "targeted"
) -> dict[str, dict[str, Any]]:
    """Minimum detectable effect of ``arm`` − standard per metric (ROUGE-L; ``loglik`` where
    the per-example frames have it), from the paired per-document differences."""
    if arm not in frames or "standard" not in frames:
        return {}
    targeted, standard = frames[arm], frames["standard"]
    out = {}
    for metric in ("rougeL", "loglik"):
        if metric in targeted.columns and metric in standard.columns:
            diffs = (targeted.loc[standard.index, metric] - standard[metric]).dropna()
            if len(diffs) >= 2:
                out[metric] = paired_power(diffs.to_numpy())
    return out


def write_summary(
    layout: RunLayout, config: StudyConfig, *, arm_names: list[str], runner: StageRunner
) -> Path:
    """Compute the summary of the finished run in ``layout``, draw the report's figures and save
    it; returns the path of ``summary.json``."""
    seeds, seed0 = config.seeds, config.seeds[0]
    diff_result = DiffResult.load(layout / layout.DIFF)
    diff = diff_result.summary
    circuit = Circuit.load(layout / layout.locate())
    causal = ValidateResult.load(layout / layout.VALIDATE)

    frames = {BASE: _per_example(layout, [BASE]), FULL: _per_example(layout, [FULL])}
    trainings: dict[str, list[dict[str, Any]]] = {}
    for name in arm_names:
        frames[name] = _per_example(layout, [layout.run_key(name, s) for s in seeds])
        trainings[name] = [
            TrainingResult.load(layout / layout.lora(name, s)).to_dict() for s in seeds
        ]
    full_row = _full_training(layout / layout.FINETUNE)

    target_key, target = _to_target(trainings["standard"])
    # the smooth outcome beside ROUGE-L: validation loss is measured on every curve point
    loss_target = final_value([r.get("curve", []) for r in trainings["standard"]], "val_loss")
    lora: dict[str, Any] = {
        BASE: score_row(frames[BASE], seed0)
        | {
            "trainable_params": 0,
            "epochs": 0,
            "steps_to_target": None,
            "total_steps": 0,
            "wall_s": 0.0,
        },
        FULL: score_row(frames[FULL], seed0) | full_row,
    }
    for name, runs in trainings.items():
        lora[name] = score_row(frames[name], seed0) | {
            "trainable_params": runs[0]["trainable_params"],
            "epochs": len(runs[0]["epochs"]),
            "steps_to_target": _steps_to(runs, target_key, target),
            "total_steps": len(runs[0]["step_losses"]),
            "target_metric": target_key,
            "steps_to_target_loss": _steps_to(runs, "val_loss", loss_target),
            "wall_s": sum(r["wall_s"] for r in runs) / len(runs),
            "tokens_per_s": sum(r["epochs"][-1]["tokens_per_s"] for r in runs) / len(runs),
            "layers": runs[0]["config"].get("layers"),
            "heads": runs[0]["config"].get("heads"),
        }

    versus = comparisons(frames, seed0)

    n_layers = diff_result.n_layers
    suff, nec = causal.sufficiency, causal.necessity
    percentile = causal.random_percentile or {}
    controls = causal.controls or []
    causal_summary = {
        "m_base": causal.m_base,
        "m_ft": causal.m_ft,
        "sufficiency": suff["value"],
        "sufficiency_ci95": suff["ci95"],
        "necessity": nec["value"],
        "necessity_ci95": nec["ci95"],
        "random_percentile": {k: (v or {}).get("value") for k, v in percentile.items()},
        "controls_mean": {
            k: (sum(c[k]["value"] for c in controls) / len(controls) if controls else None)
            for k in ("sufficiency", "necessity")
        },
        "n_controls": len(controls),
        "ablation": causal.ablation,
        **_ceiling(causal),
    }

    faith = FaithfulnessResult.load(layout / layout.FAITHFULNESS)
    where = _placement(layout, len(circuit.layers)) if config.placement.enabled else None
    examples = _examples(layout, [FULL, *arm_names], seeds[0])
    vs_random = evidence.targeted_vs_random(lora)
    targeted_vs_standard = versus.get("vs_standard", {}).get("targeted")
    summary = StudySummary(
        model=config.model,
        finetuned=lora[FULL].get("external"),  # None: fine-tuned by the study
        dataset=config.data,
        preset=config.preset,
        n_docs_analysed=diff["n_docs"],
        entropy={
            "frac_heads_decreased": diff["frac_heads_entropy_decreased"],
            "ci95": diff["frac_heads_entropy_decreased_ci95"],
            "frac_heads_sig_decreased": diff["frac_heads_sig_decreased"],
        },
        layers_ranked=diff_result.layers_ranked,
        circuit={
            "layers": circuit.layers,
            "heads": [list(h) for h in circuit.heads],
            "rule": circuit.rule,
            "score": circuit.score,
        },
        causal=causal_summary,
        faithfulness=_faithfulness(faith, len(circuit.layers)),
        attribution_vs_exact=_vs_exact(layout, config),
        lora=lora,
        comparisons=versus,
        targeted_vs_random=vs_random,
        placement=where,
        paper_claims=[
            claims.middle_layers_claim(
                diff_result.layers_ranked,
                n_layers,
                per_doc_kl=diff_result.layer_scores_per_doc("kl"),
                seed=seed0,
            ),
            claims.entropy_claim(
                diff["frac_heads_entropy_decreased"],
                diff["frac_heads_entropy_decreased_ci95"],
                n_heads=len(diff_result.heads),
                n_docs=diff["n_docs"],
            ),
            claims.lora_evidence(
                claims.lora_claim(lora, targeted_vs_standard),
                targeted_vs_standard,
                _paired_power(frames),
                vs_random,
            ),
            *_adapt_claims(lora, versus, frames, where, arm_names),
        ],
        examples=examples,
        timings_s={**runner.timings, "skipped": runner.skipped},
        config=config.to_dict(),
        provenance=provenance(config.to_dict(), seed=seed0),
    )
    summary.figures = draw_study_figures(
        layout, summary, arms=arm_names, seed=seed0, exact=layout.EXACT
    )
    return summary.save(layout.root)


def _ceiling(causal: ValidateResult) -> dict[str, Any]:
    """The ceiling beside the circuit's figures: f(all) per measure with its CI, the figures
    normalised by it, what the fractions are of, and the gain's flags (empty: a validate result
    written before they existed)."""
    if not causal.ceiling:
        return {}
    out: dict[str, Any] = {"fraction_of": "m_ft − m_base", "f_none": causal.ceiling["none"]}
    for key in ("sufficiency", "necessity"):
        out[f"{key}_all"] = causal.ceiling[key]["value"]
        out[f"{key}_all_ci95"] = causal.ceiling[key]["ci95"]
        out[f"{key}_normalised"] = causal.normalised[key]["value"]
        out[f"{key}_normalised_ci95"] = causal.normalised[key]["ci95"]
    out["gain_negative"] = causal.delta.get("negative")
    out["gain_ci_spans_zero"] = causal.delta.get("ci_spans_zero")
    out["overlap"] = causal.documents.get("overlap")
    return out


def _faithfulness(result: FaithfulnessResult, k: int) -> dict[str, Any]:
    """Areas per locator, the most faithful one, and each locator's point at the circuit's size
    (with its percentile among random sets of that size), and which documents scored."""
    at_k = {}
    for name in result.areas:
        try:
            row = result.at_size(name, k)
        except KeyError:  # k is not among the curve's sizes
            continue
        at_k[name] = {
            key: row[key]
            for key in (
                "sufficiency",
                "sufficiency_lo",
                "sufficiency_hi",
                "sufficiency_percentile",
                "necessity",
                "necessity_percentile",
                "sufficiency_norm",
            )
            if key in row
        }
    documents = dict(result.documents)  # the ids stay in faithfulness.json
    documents["scoring"] = {k: v for k, v in documents.get("scoring", {}).items() if k != "ids"}
    documents.pop("selection_records", None)
    return {
        "level": result.level,
        "areas": result.areas,
        "most_faithful": result.best(),
        "choice": result.choice,
        "ceiling": result.ceiling,
        "rankings": {name: source.get("ranking") for name, source in result.sources.items()},
        "circuit_size": k,
        "at_circuit_size": at_k,
        "documents": documents,
    }


def _placement(layout: RunLayout, k: int) -> dict[str, Any]:
    """The placement curve's table, references and band, the documents it scored on, and the
    locator the targeted-adapt arm takes at the circuit's size ``k`` (None when k is not on the
    curve), with why."""
    result = PlacementResult.load(layout / layout.PLACEMENT)
    outcome = result.documents["outcome"]
    try:
        best = result.best_at(k)
    except SumcircuitError:  # the circuit's size is not on the curve: no arm reads it there
        best = None
    chosen = None
    if best is not None:
        n_loc = len({r["locator"] for r in result.rows})
        lo, hi = best["gap_closed_ci95"]
        chosen = best | {
            "why": (
                f"at k = {k} (the circuit's size) {best['locator']} closed the most gap of the "
                f"{n_loc} locators on the placement curve ({best['gap_closed']:+.2f}, 95% CI "
                f"{lo:+.2f} to {hi:+.2f}), scored on {outcome['n']} {outcome['split']} documents "
                "that no locator and no training run read"
            )
        }
    return {
        "rows": result.to_dict()["rows"],
        "random": result.to_dict()["random"],
        "references": {"base": result.reference("base"), "standard": result.reference("all")},
        "sizes": result.sizes,
        "n_layers": result.n_layers,
        "documents": {k_: outcome[k_] for k_ in ("split", "offset", "limit", "n")},
        "single_layer": result.single_layer,
        "chosen": chosen,
    }


def _adapt_claims(
    lora: dict[str, Any],
    versus: dict[str, Any],
    frames: dict[str, pd.DataFrame],
    where: dict[str, Any] | None,
    arm_names: list[str],
) -> list[dict[str, Any]]:
    """The claim of the targeted-adapt arm, when it ran (none otherwise)."""
    arm = claims.ADAPT_ARM
    if arm not in arm_names:
        return []
    comparison = versus.get("vs_standard", {}).get(arm)
    row = claims.adapt_claim(lora, comparison, (where or {}).get("chosen"))
    vs_random = evidence.targeted_vs_random(lora, arm=arm)
    row = claims.lora_evidence(row, comparison, _paired_power(frames, arm), vs_random, arm=arm)
    if where and where.get("chosen"):
        row["evidence"] += f" Layers chosen because {where['chosen']['why']}."
        row["evidence_data"]["chosen"] = where["chosen"]
    return [row]


def _vs_exact(layout: RunLayout, config: StudyConfig) -> list[dict[str, Any]] | None:
    """Each attribution method's agreement with the exact layer scan (None: no scan ran); a
    method whose ranking does not follow the scan is warned about."""
    if not config.exact.enabled:
        return None
    found = []
    for method in config.attribute.methods:
        vs = attribution_vs_exact(
            AttributionResult.load(layout / layout.attribute(method)),
            ExactResult.load(layout / layout.EXACT),
        )
        advice = untrusted_advice(vs)
        if advice:
            log.warning(advice)
        found.append(vs)
    return found


def _examples(layout: RunLayout, names: list[str], seed: int) -> list[dict[str, Any]]:
    base = _predictions(layout, BASE)
    others = {n: _predictions(layout, _eval_key(n, seed)) for n in names}
    rows = []
    for example_id in list(base.index)[:N_EXAMPLES]:
        arms = {BASE: base.loc[example_id, "prediction"]} | {
            n: f.loc[example_id, "prediction"] for n, f in others.items()
        }
        rows.append(
            {
                "id": str(example_id),
                "document": base.loc[example_id, "document"],
                "reference": base.loc[example_id, "reference"],
                "arms": arms,
            }
        )
    return rows
