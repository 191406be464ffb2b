"""One self-contained HTML report of a study, built from its summary (:class:`StudySummary`,
``RUN/summary.json``) and the figure files it lists.

No network: images are inlined as base64 data URIs, the style sheet is inline and there is no
script. Every text that comes from data, models or configs is HTML-escaped.

A run directory is data: a figure the summary lists is inlined only when it is a regular file
inside the run, reached without symlinks, listed unchanged in the manifest (``stage.json``) of
the stage that wrote it (the summary step writes one for ``RUN/report``), and a PNG. Any other
is shown as "figure refused: NAME (why)" and logged in one line — never read into the page.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from html import escape
from pathlib import Path
from typing import Any

from sumcircuit.analysis.causal.areas import choice_sentence
from sumcircuit.io import write_text
from sumcircuit.layout import RunLayout
from sumcircuit.manifest import confinement_problem, vouch
from sumcircuit.report.summary_result import StudySummary

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1b1f24;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.holds-true{background:#dafbe1}.holds-false{background:#ffebe9}.holds-null{background:#fff8c5}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{font-size:.85em;color:#57606a}pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.8em}
.muted{color:#57606a}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _ci(ci: Any, digits: int = 3) -> str:
    if not ci or ci[0] is None:
        return "—"
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(layout: RunLayout, relative: str, caption: str) -> str:
    """One figure inlined, or a line saying why it is missing or refused (see the module
    docstring)."""
    name = _e(relative)
    if confinement_problem(layout.root, relative) == "does not exist":
        return f'<p class="muted">figure missing: {name}</p>'
    data, problem = _read_png(layout, relative)
    if problem is not None:
        log.warning("report: figure refused: %s (it %s)", relative, problem)
        return f'<p class="muted">figure refused: {name} (it {_e(problem)})</p>'
    encoded = base64.b64encode(data).decode()
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _read_png(layout: RunLayout, relative: str) -> tuple[bytes, str | None]:
    """The figure's bytes and None, or ``b""`` and why it may not be inlined. The bytes are
    read once, without following a symlink, and the checks run on what was read."""
    problem = confinement_problem(layout.root, relative)
    if problem is not None:
        return b"", problem
    try:
        fd = os.open(layout.resolve(relative), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read()
    except OSError as err:
        return b"", f"cannot be read ({err.strerror or type(err).__name__})"
    problem = vouch(layout.root, relative, data)
    if problem is not None:
        return b"", problem
    if not data.startswith(PNG_SIGNATURE):
        return b"", "is not a PNG file"
    return data, None


_VERDICTS = {True: "holds", False: "does not hold", None: "undecided (CI too wide)"}
_METRIC_NAMES = {"rougeL": "ROUGE-L", "loglik": "log-likelihood"}


def _claims(summary: StudySummary) -> str:
    rows, classes = [], []
    for claim in summary.claims():
        holds = claim["holds"]
        verdict = _VERDICTS[holds]
        per_metric = claim["verdicts"]
        if per_metric:  # each outcome's own verdict, in a fixed order
            short = {True: "holds", False: "does not hold", None: "undecided"}
            names = [m for m in _METRIC_NAMES if m in per_metric]
            names += sorted(m for m in per_metric if m not in _METRIC_NAMES)
            verdict += " — " + "; ".join(
                f"{_METRIC_NAMES.get(m, m)}: {short[per_metric[m]]}" for m in names
            )
        rows.append(
            [
                _e(claim["claim"]),
                _e(claim["paper"]),
                _e(claim["ours"]),
                _e(verdict),
                _e(claim["evidence"]),
            ]
        )
        classes.append(f"holds-{str(holds).lower() if holds is not None else 'null'}")
    return _table(["claim", "paper", "this study", "verdict", "evidence"], rows, classes)


def _lora(summary: StudySummary) -> str:
    rows = []
    for arm, r in summary.lora_rows().items():
        rows.append(
            [
                _e(arm),
                _num(r["rouge1"]),
                _num(r["rouge2"]),
                _num(r["rougeL"]) + f' <span class="muted">{_ci(r["rougeL_ci95"])}</span>',
                _num(r["rougeLsum"]),
                _num(r["loop_rate"]) + f' <span class="muted">{_ci(r["loop_rate_ci95"])}</span>',
                _num(r["loglik"]) + f' <span class="muted">{_ci(r["loglik_ci95"])}</span>',
                _num(r["trainable_params"]),
                _num(r["epochs"]),
                _num(r["steps_to_target"])
                + f' <span class="muted">of {_num(r["total_steps"])}</span>',
                _num(r["steps_to_target_loss"]),
                _num(r["wall_s"], 0),
            ]
        )
    headers = [
        "arm",
        "ROUGE-1",
        "ROUGE-2",
        "ROUGE-L [95% CI]",
        "ROUGE-Lsum",
        "loop rate [95% CI]",
        "log-likelihood / token [95% CI]",
        "trainable params",
        "epochs",
        "steps to standard's final (val ROUGE-L, else loss)",
        "steps to standard's val loss",
        "train wall s",
    ]
    out = _table(headers, rows)
    out += (
        '<p class="muted">Log-likelihood: mean over test documents of the reference summary\'s '
        "mean log-probability per token (natural log, teacher-forced after the generation "
        "prompt; higher is better). Loop rate: the share of generated summaries in which some "
        "3-gram of words (lowercased, split on whitespace) occurs twice (lower is better).</p>"
    )
    return out + _comparisons(summary.differences())


def _diff_cells(diff: dict[str, Any] | None) -> list[str]:
    if not diff:
        return ["—", "—", "—"]
    return [f"{diff['mean_diff']:+.3f}", _ci(diff["ci95"]), _num(diff.get("p_value"))]


def _comparisons(differences: list[tuple[str, str, dict[str, Any]]]) -> str:
    rows = [
        [_e(arm), _e(reference)]
        + _diff_cells(diffs.get("rougeL"))
        + _diff_cells(diffs.get("loglik"))
        for arm, reference, diffs in differences
    ]
    if not rows:
        return ""
    return (
        "<p>Paired bootstrap differences (arm − reference) on the same test documents, "
        "against the standard arm and against the base model:</p>"
        + _table(
            ["arm", "against", "ΔROUGE-L", "95% CI", "p", "Δlog-likelihood", "95% CI", "p"],
            rows,
        )
    )


def _causal(summary: StudySummary) -> str:
    causal = summary.causal
    if not causal:
        return '<p class="muted">not run</p>'
    ceiling = "sufficiency_all" in causal  # absent from summaries written before it existed
    rows = []
    for key in ("sufficiency", "necessity"):
        row = [
            _e(key),
            _num(causal[key]),
            _ci(causal[f"{key}_ci95"]),
            _num(causal["random_percentile"].get(key), 1),  # {}: no random controls
            _num(causal["controls_mean"][key]),
        ]
        if ceiling:
            row += [
                _num(causal[f"{key}_all"])
                + f' <span class="muted">{_ci(causal[f"{key}_all_ci95"])}</span>',
                _num(causal[f"{key}_normalised"])
                + f' <span class="muted">{_ci(causal[f"{key}_normalised_ci95"])}</span>',
            ]
        rows.append(row)
    text = (
        f"<p>m = mean log-likelihood per summary token: base {_num(causal['m_base'])}, "
        f"fine-tuned {_num(causal['m_ft'])}; {_num(causal['n_controls'])} random component "
        "sets of the same size as controls. Figures are fractions of m_ft − m_base."
    )
    headers = ["measure", "circuit (of m_ft − m_base)", "95% CI", "percentile among random sets"]
    headers += ["random mean"]
    if ceiling:
        text += (
            " f(all): every node of the level patched (every layer's write to the residual stream,"
            " or every head; weights outside them — embeddings, final norm, LM head, and for"
            " heads also W_O, norms and MLPs — stay with the target model, so f(all) &lt; 1 "
            "in general); normalised: (f − f(none)) / (f(all) − f(none)) with f(none) = 0."
        )
        headers += ["f(all) [95% CI]", "normalised f / f(all) [95% CI]"]
        if causal.get("gain_negative") or causal.get("gain_ci_spans_zero"):
            text += (
                " <strong>The gain m_ft − m_base is negative or its CI spans 0: these fractions "
                "are not interpretable as shares of an established gain.</strong>"
            )
    return text + "</p>" + _table(headers, rows)


def _faithfulness(summary: StudySummary) -> str:
    faith = summary.faithfulness
    if not faith:
        return '<p class="muted">not run</p>'
    k = faith["circuit_size"]
    at_k = faith["at_circuit_size"]
    rankings = faith.get("rankings", {})
    rows = []
    for name, area in sorted(faith["areas"].items(), key=lambda kv: -kv[1]["cpr"]):
        point = at_k.get(name, {})  # a locator whose curve has no point at the circuit's size
        rows.append(
            [
                _e(name) + (" (chosen)" if name == faith["most_faithful"] else ""),
                _e(rankings.get(name) or "—"),
                _num(area["cpr"]) + f' <span class="muted">{_ci(area.get("cpr_ci95"))}</span>',
                _num(area["cmd"]) + f' <span class="muted">{_ci(area.get("cmd_ci95"))}</span>',
                _num(point.get("sufficiency")),
                _ci([point.get("sufficiency_lo"), point.get("sufficiency_hi")]),
                _num(point.get("sufficiency_percentile"), 1),
                _num(point.get("necessity")),
                _num(point.get("necessity_percentile"), 1),
            ]
        )
    docs = faith["documents"]
    scoring = docs["scoring"]
    text = (
        f"<p>Each locator ranks {_e(faith['level'])}s on the selection documents "
        f"({_e(docs['selection'])}); its top-n are patched on {_num(scoring['n_docs'])} "
        f"other {_e(scoring['split'])} documents. Sufficiency is a fraction of m_ft − m_base. "
        "CPR: area under the sufficiency curve (higher is better); CMD: area under "
        "|1 − sufficiency| (lower is better); both with bootstrap 95% CIs over scoring "
        "documents. Ranking: signed scores, or absolute (|score|). The circuit comes from the "
        "most faithful locator."
    )
    ceiling = faith.get("ceiling") or {}
    if ceiling:
        suff = ceiling["sufficiency"]
        text += (
            f" f(all), every node patched: sufficiency {_num(suff['value'])} "
            f"{_ci(suff['ci95'])}, necessity {_num(ceiling['necessity']['value'])}."
        )
    if faith.get("choice"):
        text += f" {_e(choice_sentence(faith['choice']))}."
    return (
        text
        + "</p>"
        + _table(
            [
                "locator",
                "ranking",
                "CPR [95% CI]",
                "CMD [95% CI]",
                f"sufficiency at {k} (of m_ft − m_base)",
                "95% CI",
                "percentile vs random",
                f"necessity at {k}",
                "percentile vs random",
            ],
            rows,
        )
    )


def _vs_exact(summary: StudySummary, figures: str) -> str:
    """Each attribution method against the exact layer scan; nothing when the study ran no
    scan."""
    found = summary.attribution_vs_exact
    if not found:
        return ""
    rows = [
        [
            _e(vs["method"]),
            _num(vs["pearson"]),
            _num(vs["kendall"]),
            _num(vs["top3_overlap"], 2),
        ]
        for vs in found
    ]
    text = (
        "<p>Each attribution method's estimate of each layer against exact patching of that "
        f"layer alone, on the first {_num(found[0]['n_docs'])} selection documents.</p>"
    )
    table = _table(["method", "Pearson r", "Kendall τ", "top-3 overlap"], rows)
    return f"<h2>Attribution vs exact patching</h2>{text}{table}{figures}"


def _placement(summary: StudySummary, figures: str) -> str:
    """The placement curve: each locator's top-k LoRA against random k-layer sets; nothing when
    the study drew no curve."""
    where = summary.placement
    if not where:
        return ""
    refs, docs = where["references"], where["documents"]
    rows = [
        [
            _e(r["view"]),
            _e(r["locator"]),
            _num(r["k"]),
            _e(r["layers"]),
            _num(r["loglik"]) + f' <span class="muted">{_ci(r["loglik_ci95"])}</span>',
            _num(r["gap_closed"], 2)
            + f' <span class="muted">{_ci(r["gap_closed_ci95"], 2)}</span>',
            _num(r["percentile"], 0),
            _num(r["trainable_params"]),
        ]
        for r in where["rows"]
    ]
    chosen = where.get("chosen")
    text = (
        f"<p>LoRA on each locator's top-k layers, same rank, pairs, steps, lr and seed; scored by "
        f"the held-out log-likelihood per reference token on {_num(docs['n'])} {_e(docs['split'])} "
        f"documents from #{_num(docs['offset'])} that no locator and no training run read. Base "
        f"{_num(refs['base']['loglik'])}, standard LoRA (every layer) "
        f"{_num(refs['standard']['loglik'])}. Gap closed = (LL − mean LL of the random k-sets) / "
        "(LL of standard − mean LL of the random k-sets), bootstrap CI over documents.</p>"
    )
    if chosen:
        text += f"<p>targeted-adapt: {_e(chosen['why'])}; layers {_e(chosen['layers'])}.</p>"
    table = _table(
        ["view", "locator", "k", "layers", "log-likelihood [95% CI]", "gap closed [95% CI]",
         "percentile vs random", "trainable params"],
        rows,
    )  # fmt: skip
    return f"<h2>Where to adapt: the placement curve</h2>{text}{table}{figures}"


def _examples(summary: StudySummary) -> str:
    parts = []
    for ex in summary.examples:
        rows = [["reference", _e(ex["reference"])]] + [
            [_e(arm), _e(text)] for arm, text in ex["arms"].items()
        ]
        parts.append(
            f"<h3>{_e(ex['id'])}</h3><p class='muted'>{_e(ex['document'])}</p>"
            + _table(["source", "summary"], rows)
        )
    return "".join(parts) or '<p class="muted">no examples</p>'


def build_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report.html`` from the run's :class:`StudySummary` and the figures it lists."""
    layout = RunLayout(Path(run_dir))
    summary = StudySummary.load(layout.root)
    entropy, circuit = summary.entropy, summary.circuit

    def figs(section: str) -> str:
        return "".join(
            _figure(layout, rel, caption) for rel, caption in summary.figures_of(section)
        )

    details = {
        "config": summary.config,
        "provenance": summary.provenance,
        "timings_s": summary.timings_s,
    }
    body = f"""
<h1>sumcircuit report</h1>
<p class="muted">model {_e(summary.model)} · data {_e(summary.dataset)} ·
{_num(summary.n_docs_analysed)} documents analysed · preset {_e(summary.preset)}</p>
<h2>The paper's claims</h2>{_claims(summary)}
<h2>Where fine-tuning changed the model</h2>
<p>{_num(entropy.get("frac_heads_decreased"), 3)} of heads lost entropy in the summary region
(95% CI {_ci(entropy.get("ci95"))}); {_num(entropy.get("frac_heads_sig_decreased"), 3)} significantly
(Benjamini–Hochberg q &lt; 0.05). Layers ranked by attention KL, most changed first:
{_e(summary.layers_ranked)}.</p>
{figs("diff")}
<h2>Circuit</h2>
<p>Rule {_e(circuit.get("rule"))} on score {_e(circuit.get("score"))}: layers {_e(circuit.get("layers"))};
heads {_e(circuit.get("heads"))}. Layers and heads are numbered from 0.</p>
<h2>Which locator is faithful</h2>{_faithfulness(summary)}{figs("faithfulness")}
{_vs_exact(summary, figs("agreement"))}
<h2>Causal validation</h2>{_causal(summary)}{figs("causal")}
{_placement(summary, figs("placement"))}
<h2>LoRA: targeted vs standard</h2>{_lora(summary)}{figs("lora")}
<h2>Example summaries</h2>{_examples(summary)}
<h2>Config and provenance</h2>
<pre>{_e(json.dumps(details, indent=2, sort_keys=True))}</pre>
"""
    html = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>sumcircuit report — {_e(summary.model)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    write_text(layout.report_file, html)
    return layout.report_file
