"""The study report's own figures, drawn into ``RUN/report/`` from saved results only.

:func:`draw_study_figures` reads the :class:`StudySummary`'s numbers and the stages' results
(through their ``load``) and returns the summary's ``figures``: per report section, each figure's
path relative to the run and its caption. The stages' own figures (diff, validate,
faithfulness) are listed, not drawn: their stages drew them, and their stages' ``stage.json``
vouches for them. The figures drawn here are vouched for by a ``stage.json`` beside them in
``RUN/report`` that lists exactly them (:func:`~sumcircuit.manifest.write_manifest`), so that
the report inlines no file that merely lies there.
"""

from __future__ import annotations

from typing import Any

from sumcircuit.analysis.causal.agreement import TRUSTED_PEARSON
from sumcircuit.evaluation.evaluate import LOGLIK
from sumcircuit.layout import RunLayout
from sumcircuit.manifest import write_manifest
from sumcircuit.models.trained import TrainingResult
from sumcircuit.report.causal_plots import plot_attribution_vs_exact
from sumcircuit.report.lora_plots import learning_curves, metric_bars
from sumcircuit.report.summary_result import StudySummary

__all__ = ["draw_study_figures", "untrusted_advice"]

Figures = dict[str, list[tuple[str, str]]]


def draw_study_figures(
    layout: RunLayout, summary: StudySummary, *, arms: list[str], seed: int, exact: str
) -> Figures:
    """Draw the LoRA figures (test scores of every model, learning curves of each arm's ``seed``
    run) and one attribution-vs-exact scatter per method of ``summary.attribution_vs_exact``
    (``exact``: the exact scan's stage); list the stages' figures beside them."""
    figures = _stage_figures(layout) | {"lora": _lora_figures(layout, summary, arms, seed)}
    figures["agreement"] = [
        _agreement_figure(layout, vs, exact) for vs in summary.attribution_vs_exact or []
    ]
    drawn = [layout.resolve(rel) for key in ("lora", "agreement") for rel, _ in figures[key]]
    write_manifest(layout.figures, drawn, written_by="summary")
    return figures


def untrusted_advice(vs: dict[str, Any]) -> str | None:
    """What to do about an attribution method whose layer ranking does not follow exact
    patching (``vs``: its ``attribution_vs_exact`` entry); None for a trusted one."""
    if vs["trusted"]:
        return None
    return (
        f"{vs['method']}'s layer ranking does not follow exact patching on this model "
        f"(Pearson r {vs['pearson']:.2f} < {TRUSTED_PEARSON}); read its locator with "
        "care, or add --set 'attribute.methods=[atp,ig-weights]'"
    )


def _stage_figures(layout: RunLayout) -> Figures:
    def listed(stage: str, caption: str | None = None) -> list[tuple[str, str]]:
        return [
            (layout.relative(p), caption or p.stem.replace("_", " ")) for p in layout.pngs(stage)
        ]

    return {
        "diff": listed(layout.DIFF),
        "causal": listed(layout.VALIDATE),
        "faithfulness": listed(
            layout.FAITHFULNESS,
            "faithfulness curves: each locator's top-n layers, random sets as a band",
        ),
        "placement": listed(
            layout.PLACEMENT,
            "placement curve: LoRA on each locator's top-k layers, random k-layer sets as a band, "
            "standard LoRA and the base model as lines",
        ),
    }


def _lora_figures(
    layout: RunLayout, summary: StudySummary, arms: list[str], seed: int
) -> list[tuple[str, str]]:
    trainings = {
        arm: TrainingResult.load(layout / layout.lora(arm, seed)).to_dict() for arm in arms
    }
    curves = learning_curves(trainings, layout.figure("lora_curves"))
    rows = {k: summary.lora[k] for k in [RunLayout.BASE_EVAL, RunLayout.FULL_EVAL, *arms]}
    bars = metric_bars(rows, layout.figure("rouge_bars"), key="rougeL", label="test ROUGE-L")
    loglik_bars = metric_bars(
        rows,
        layout.figure("loglik_bars"),
        key=LOGLIK,
        label="test log-likelihood per reference token",
        from_zero=False,
    )
    figures = []
    if bars:  # None: every model was evaluated with --no-generate
        figures.append((layout.relative(bars), "test ROUGE-L by arm, 95% CI"))
    if loglik_bars:  # None: no model has a log-likelihood
        caption = "test log-likelihood per reference token by arm, 95% CI"
        figures.append((layout.relative(loglik_bars), caption))
    figures.append((layout.relative(curves), "learning curves (first seed)"))
    return figures


def _agreement_figure(layout: RunLayout, vs: dict[str, Any], exact: str) -> tuple[str, str]:
    """One method's scatter against the exact scan, captioned with its Pearson r (and the
    advice when it is below the trusted level)."""
    method = vs["method"]
    png = plot_attribution_vs_exact(
        layout / layout.attribute(method),
        layout / exact,
        layout.figure(f"attribution_vs_exact_{method}"),
    )
    caption = (
        f"attribution ({method}) vs exact patching of each layer on the first "
        f"{vs['n_docs']} selection documents (Pearson r {vs['pearson']:.2f})"
    )
    advice = untrusted_advice(vs)
    if advice:
        caption += f" — {advice}"
    return layout.relative(png), caption
