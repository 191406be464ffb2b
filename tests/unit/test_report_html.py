"""The HTML report is self-contained and escapes every text from data or models."""

from __future__ import annotations

import base64
from pathlib import Path

from sumcircuit.io import write_json
from sumcircuit.report.html import build_report
from sumcircuit.study.claims import entropy_claim, lora_claim, middle_layers_claim

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_report_inlines_figures_and_escapes_text(tmp_path: Path) -> None:
    (tmp_path / "fig.png").write_bytes(PNG)
    evil = "<script>alert('x')</script>"
    write_json(
        tmp_path / "summary.json",
        {
            "model": "tiny",
            "dataset": evil,
            "paper_claims": [entropy_claim(0.7, [0.55, 0.8])],
            "figures": {"diff": [["fig.png", "delta entropy heatmap"]]},
            "examples": [
                {"id": "1", "document": evil, "reference": "ref & co", "arms": {"full": evil}}
            ],
            "lora": {
                "standard": {"rougeL": 0.2, "rougeL_ci95": [0.1, 0.3], "trainable_params": 10}
            },
        },
    )
    html = build_report(tmp_path).read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert (
        "data:image/png;base64," in html
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
    row = lora_claim(lora, {"mean_diff": 0.05, "ci95": [0.01, 0.09]})
    assert row["holds"] is True and "90% fewer" in row["ours"]
    assert lora_claim(lora, {"mean_diff": 0.0, "ci95": [-0.02, 0.03]})["holds"] is None
    assert lora_claim({}, None)["holds"] is None
