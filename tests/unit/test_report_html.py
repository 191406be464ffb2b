"""The HTML report is self-contained and escapes every text from data or models."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.manifest import write_manifest
from sumcircuit.report.html import build_report
from sumcircuit.report.summary_result import StudySummary
from sumcircuit.study.claims import entropy_claim, lora_claim, middle_layers_claim

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_report_inlines_figures_and_escapes_text(tmp_path: Path) -> None:
    (tmp_path / "diff" / "plots").mkdir(parents=True)
    (tmp_path / "diff" / "plots" / "fig.png").write_bytes(PNG)
    write_manifest(tmp_path / "diff", [tmp_path / "diff" / "plots" / "fig.png"])
    evil = "<script>alert('x')</script>"
    StudySummary(
        model="tiny",
        dataset=evil,
        paper_claims=[entropy_claim(0.7, [0.55, 0.8])],
        figures={"diff": [("diff/plots/fig.png", "delta entropy heatmap")]},
        examples=[{"id": "1", "document": evil, "reference": "ref & co", "arms": {"full": evil}}],
        lora={"standard": {"rougeL": 0.2, "rougeL_ci95": [0.1, 0.3], "trainable_params": 10}},
    ).save(tmp_path)
    html = build_report(tmp_path).read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert (
        f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in html
        and "http" not in html.split("<body>")[1].split("</style>")[0]
    )
    assert "ref &amp; co" in html and "holds-true" in html
    assert "<th>evidence</th>" in html and "entirely above 50%" in html


def test_claims_decide_only_when_the_ci_does() -> None:
    assert entropy_claim(0.7, [0.55, 0.8])["holds"] is True
    assert entropy_claim(0.3, [0.2, 0.45])["holds"] is False
    assert entropy_claim(0.55, [0.4, 0.7])["holds"] is None
    assert middle_layers_claim([2, 3, 5, 0], 12)["holds"] is True
    assert middle_layers_claim([10, 11, 0], 12)["holds"] is False
    lora = {
        "standard": {"rougeL": 0.2, "trainable_params": 100},
        "targeted": {"rougeL": 0.25, "trainable_params": 10},
    }
    row = lora_claim(lora, {"rougeL": {"mean_diff": 0.05, "ci95": [0.01, 0.09]}})
    assert row["holds"] is True and "90% fewer" in row["ours"]
    undecided = {"rougeL": {"mean_diff": 0.0, "ci95": [-0.02, 0.03]}}
    assert lora_claim(lora, undecided)["holds"] is None
    assert lora_claim({}, None)["holds"] is None


def test_report_shows_loglik_and_both_comparisons(tmp_path: Path) -> None:
    lora = {
        "standard": {"rougeL": 0.2, "loglik": -2.2, "trainable_params": 100},
        "targeted": {"rougeL": 0.25, "loglik": -2.1, "trainable_params": 10},
    }
    diff = {"mean_diff": 0.1, "ci95": [0.05, 0.15], "p_value": 0.001, "n": 9}
    claim = lora_claim(lora, {"rougeL": diff | {"ci95": [-0.01, 0.2]}, "loglik": diff})
    lora["standard"] |= {"rougeL_ci95": [0.1, 0.3], "loglik_ci95": [-2.4, -2.0]}
    lora["standard"] |= {"loop_rate": 0.125, "loop_rate_ci95": [0.0, 0.375]}
    StudySummary(
        paper_claims=[claim],
        lora=lora,
        comparisons={
            "vs_standard": {"targeted": {"rougeL": diff, "loglik": diff}},
            "vs_base": {"targeted": {"rougeL": diff, "loglik": None}},
        },
    ).save(tmp_path)
    html = build_report(tmp_path).read_text()
    assert "log-likelihood / token [95% CI]" in html and "-2.200" in html
    assert "[-2.400, -2.000]" in html
    assert "loop rate [95% CI]" in html and "0.125" in html and "[0.000, 0.375]" in html
    header = html.split("ROUGE-Lsum</th>")[1]
    assert header.startswith("<th>loop rate [95% CI]</th>")  # beside ROUGE
    assert "Δlog-likelihood" in html and "against the base model" in html
    body = html.split("ΔROUGE-L")[1]
    assert body.count("<td>standard</td>") == 1 and body.count("<td>base</td>") == 1
    assert "undecided (CI too wide) — ROUGE-L: undecided; log-likelihood: holds" in html


def test_a_damaged_summary_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{"model": "tiny", "lora": ')
    with pytest.raises(SumcircuitError, match=r"summary\.json' is damaged \(not valid JSON"):
        build_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_an_untrusted_attribution_method_gets_advice() -> None:
    from sumcircuit.report.figures import untrusted_advice

    vs = {"method": "atp", "pearson": 0.36, "trusted": False}
    advice = untrusted_advice(vs)
    assert advice is not None and advice.startswith("atp's layer ranking does not follow exact")
    assert "(Pearson r 0.36 < 0.7)" in advice and "attribute.methods=[atp,ig-weights]" in advice
    assert untrusted_advice(vs | {"pearson": 0.9, "trusted": True}) is None
