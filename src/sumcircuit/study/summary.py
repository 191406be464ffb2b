"""``RUN/summary.json``: every stage's headline numbers, the LoRA table and the paper's claims.

Reads the stages' outputs only through their result classes' ``load``. With several seeds, each arm's per-example ROUGE is first
averaged over seeds, then bootstrapped over examples; arms are compared to the standard arm by a
paired bootstrap over the same test examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sumcircuit.analysis.agreement import attribution_vs_exact
from sumcircuit.analysis.attribute import AttributionResult
from sumcircuit.analysis.circuit import Circuit
from sumcircuit.analysis.diff_result import DiffResult
from sumcircuit.analysis.faithfulness_result import FaithfulnessResult
from sumcircuit.analysis.scan import ScanResult
from sumcircuit.analysis.validate import CausalResult
from sumcircuit.evaluation.evaluate import EvalResult
from sumcircuit.evaluation.rouge import METRICS, aggregate
from sumcircuit.io import write_json
from sumcircuit.models.trained import TrainingResult
from sumcircuit.provenance import provenance
from sumcircuit.report.causal_plots import plot_attribution_vs_exact
from sumcircuit.report.lora_plots import learning_curves, rouge_bars
from sumcircuit.stats import paired_bootstrap_diff
from sumcircuit.study import claims
from sumcircuit.study.config import StudyConfig
from sumcircuit.study.external import ExternalFinetune
from sumcircuit.study.stages import StageRunner

N_EXAMPLES = 3  # example summaries shown in the report


def _predictions(run: Path, key: str) -> pd.DataFrame:
    """Per-example predictions and ROUGE of one evaluate stage, indexed by id."""
    return EvalResult.load(run / "evaluate" / key).predictions.set_index("id")


def _per_example(run: Path, keys: list[str]) -> pd.DataFrame:
    """Per-example ROUGE averaged over the given evaluate stages (seeds), indexed by id."""
    frames = [_predictions(run, key)[list(METRICS)] for key in keys]
    return sum(frames[1:], frames[0]) / len(frames)


def _epochs_to_target(histories: list[list[dict[str, Any]]], target: float | None) -> int | None:
    """First epoch whose seed-mean validation ROUGE-L reaches ``target`` (None if never)."""
    if target is None:
        return None
    by_epoch: dict[int, list[float]] = {}
    for history in histories:
        for e in history:
            if e.get("val_rougeL") is not None:
                by_epoch.setdefault(e["epoch"], []).append(e["val_rougeL"])
    for epoch in sorted(by_epoch):
        if sum(by_epoch[epoch]) / len(by_epoch[epoch]) >= target:
            return epoch
    return None


def _final_val_rouge(histories: list[list[dict[str, Any]]]) -> float | None:
    finals = [h[-1].get("val_rougeL") for h in histories if h]
    finals = [f for f in finals if f is not None]
    return sum(finals) / len(finals) if finals else None


def _full_training(folder: Path) -> dict[str, Any]:
    """The full fine-tune's training columns; an external fine-tune has none, only its identity."""
    if ExternalFinetune.exists(folder):
        external = ExternalFinetune.load(folder)
        return {
            "trainable_params": None,
            "epochs": None,
            "epochs_to_target": None,
            "wall_s": None,
            "external": {"path": external.path, "sha256": external.identity.get("sha256")},
        }
    training = TrainingResult.load(folder).to_dict()
    return {
        "trainable_params": training["trainable_params"],
        "epochs": len(training["epochs"]),
        "epochs_to_target": None,
        "wall_s": training["wall_s"],
    }


def _row(frame: pd.DataFrame, seed: int) -> dict[str, Any]:
    agg = aggregate(frame.reset_index(), seed=seed)
    row = {m: agg[m]["f"] for m in METRICS}
    row["rougeL_ci95"] = agg["rougeL"]["ci95"]
    return row


def write_summary(
    run: Path, config: StudyConfig, *, arm_names: list[str], runner: StageRunner
) -> Path:
    seeds, seed0 = config.seeds, config.seeds[0]
    diff_result = DiffResult.load(run / "diff")
    diff = diff_result.summary
    circuit = Circuit.load(run / "locate")
    causal = CausalResult.load(run / "validate")

    frames = {"base": _per_example(run, ["base"]), "full": _per_example(run, ["full"])}
    trainings: dict[str, list[dict[str, Any]]] = {}
    for name in arm_names:
        frames[name] = _per_example(run, [f"{name}-s{s}" for s in seeds])
        trainings[name] = [
            TrainingResult.load(run / "lora" / f"{name}-s{s}").to_dict() for s in seeds
        ]
    full_row = _full_training(run / "finetune")

    target = _final_val_rouge([t["epochs"] for t in trainings["standard"]])
    lora: dict[str, Any] = {
        "base": _row(frames["base"], seed0)
        | {"trainable_params": 0, "epochs": 0, "epochs_to_target": None, "wall_s": 0.0},
        "full": _row(frames["full"], seed0) | full_row,
    }
    for name, runs in trainings.items():
        lora[name] = _row(frames[name], seed0) | {
            "trainable_params": runs[0]["trainable_params"],
            "epochs": len(runs[0]["epochs"]),
            "epochs_to_target": _epochs_to_target([r["epochs"] for r in runs], target),
            "wall_s": sum(r["wall_s"] for r in runs) / len(runs),
            "tokens_per_s": sum(r["epochs"][-1]["tokens_per_s"] for r in runs) / len(runs),
            "layers": runs[0]["config"].get("layers"),
            "heads": runs[0]["config"].get("heads"),
        }

    standard = frames["standard"]
    versus = {}
    for name in ["base", "full", *arm_names]:
        if name == "standard":
            continue
        other = frames[name].loc[standard.index]
        d = paired_bootstrap_diff(
            other["rougeL"].to_numpy(), standard["rougeL"].to_numpy(), seed=seed0
        )
        versus[name] = {
            "mean_diff": d.mean_diff,
            "ci95": list(d.ci95),
            "p_value": d.p_value,
            "n": d.n,
        }

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
    }

    faith = FaithfulnessResult.load(run / "faithfulness")
    figures = _figures(run, trainings, lora, arm_names)
    vs_exact, figures["agreement"] = _vs_exact(run, config)
    examples = _examples(run, ["full", *arm_names], seeds[0])
    summary = {
        "model": config.model,
        "finetuned": lora["full"].get("external"),  # None: fine-tuned by the study
        "dataset": config.data,
        "preset": config.preset,
        "n_docs_analysed": diff["n_docs"],
        "entropy": {
            "frac_heads_decreased": diff["frac_heads_entropy_decreased"],
            "ci95": diff["frac_heads_entropy_decreased_ci95"],
            "frac_heads_sig_decreased": diff["frac_heads_sig_decreased"],
        },
        "layers_ranked": diff_result.layers_ranked,
        "circuit": {
            "layers": circuit.layers,
            "heads": [list(h) for h in circuit.heads],
            "rule": circuit.rule,
            "score": circuit.score,
        },
        "causal": causal_summary,
        "faithfulness": _faithfulness(faith, len(circuit.layers)),
        "attribution_vs_exact": vs_exact,
        "lora": lora,
        "lora_vs_standard": versus,
        "paper_claims": [
            claims.middle_layers_claim(diff_result.layers_ranked, n_layers),
            claims.entropy_claim(
                diff["frac_heads_entropy_decreased"], diff["frac_heads_entropy_decreased_ci95"]
            ),
            claims.lora_claim(lora, versus.get("targeted")),
        ],
        "figures": figures,
        "examples": examples,
        "timings_s": {**runner.timings, "skipped": runner.skipped},
        "config": config.to_dict(),
        "provenance": provenance(config.to_dict(), seed=seed0),
    }
    path = run / "summary.json"
    write_json(path, summary)
    return path


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
            )
        }
    return {
        "level": result.level,
        "areas": result.areas,
        "most_faithful": result.best(),
        "circuit_size": k,
        "at_circuit_size": at_k,
        "documents": result.documents,
    }


def _vs_exact(
    run: Path, config: StudyConfig
) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """The attribution's agreement with the exact layer scan, and its scatter (when it ran)."""
    if not config.scan.enabled:
        return None, []
    vs = attribution_vs_exact(
        AttributionResult.load(run / "attribute"), ScanResult.load(run / "scan")
    )
    png = plot_attribution_vs_exact(
        run / "attribute", run / "scan", run / "report" / "attribution_vs_exact"
    )
    caption = (
        f"attribution ({vs['method']}) vs exact patching of each layer on the first "
        f"{vs['n_docs']} selection documents (Pearson r {vs['pearson']:.2f})"
    )
    return vs, [(str(png.relative_to(run)), caption)]


def _figures(
    run: Path, trainings: dict[str, list[dict[str, Any]]], lora: dict[str, Any], arms: list[str]
) -> dict[str, list[tuple[str, str]]]:
    plots = run / "report"
    curves = learning_curves(
        {name: runs[0]["epochs"] for name, runs in trainings.items()}, plots / "lora_curves"
    )
    bars = rouge_bars({k: lora[k] for k in ["base", "full", *arms]}, plots / "rouge_bars")
    diff_pngs = sorted((run / "diff" / "plots").glob("*.png"))
    causal_pngs = sorted((run / "validate").glob("*.png"))
    faith_pngs = sorted((run / "faithfulness").glob("*.png"))
    rel = lambda p: str(p.relative_to(run))  # noqa: E731
    return {
        "diff": [(rel(p), p.stem.replace("_", " ")) for p in diff_pngs],
        "causal": [(rel(p), p.stem.replace("_", " ")) for p in causal_pngs],
        "faithfulness": [
            (rel(p), "faithfulness curves: each locator's top-n layers, random sets as a band")
            for p in faith_pngs
        ],
        "lora": [
            (rel(bars), "test ROUGE-L by arm, 95% CI"),
            (rel(curves), "learning curves (first seed)"),
        ],
    }


def _examples(run: Path, names: list[str], seed: int) -> list[dict[str, Any]]:
    def key(name: str) -> str:
        return name if name == "full" else f"{name}-s{seed}"

    base = _predictions(run, "base")
    others = {n: _predictions(run, key(n)) for n in names}
    rows = []
    for example_id in list(base.index)[:N_EXAMPLES]:
        arms = {"base": base.loc[example_id, "prediction"]} | {
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
