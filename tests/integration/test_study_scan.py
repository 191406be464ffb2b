"""`sumcircuit run` with ``exact.limit`` > 0 on a tiny model: the exact layer scan runs between
attribute and faithfulness, faithfulness draws its ``exact`` locator, and the summary and report
compare each attribution method (here ``atp`` and ``ig-weights``, one stage each) with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from test_study_run import WORDS, _args

from sumcircuit.analysis.causal.agreement import TRUSTED_PEARSON
from sumcircuit.analysis.causal.exact import ExactResult
from sumcircuit.cli import main
from sumcircuit.layout import RunLayout
from sumcircuit.report.summary_result import StudySummary


def test_scan_stage_checks_the_attribution(tiny_dirs, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    rows = []
    for i in range(60):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(30)]
        rows.append(
            {"id": f"d{i}", "document": " ".join(words) + ".", "summary": " ".join(words[:4]) + "."}
        )
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    sets = ["exact.limit=2", "exact.n_boot=200", "lora.arms=[standard]", "lora.epochs=1"]
    sets += ["attribute.methods=[atp,ig-weights]", "attribute.ig_steps=2"]
    argv = _args(tiny_dirs["llama"], data, out) + [a for s in sets for a in ("--set", s)]
    assert main(argv) == 0

    scan = ExactResult.load(RunLayout(out) / RunLayout.EXACT)
    assert scan.level == "layer" and scan.n_docs == 2 and len(scan.doc_ids) == 2
    assert (RunLayout(out) / RunLayout.EXACT / "stage.json").exists() and (
        RunLayout(out) / RunLayout.EXACT / "exact.png"
    ).exists()
    assert scan.provenance["data"]["split"] == "validation"  # the diff's split, first documents
    summary = StudySummary.load(out)
    faith = summary.faithfulness
    assert {"exact", "atp", "ig-weights"} <= set(faith["areas"])
    assert {"split": "validation", "limit": 2} in faith["documents"]["selection"]
    found = summary.attribution_vs_exact
    assert [vs["method"] for vs in found] == ["atp", "ig-weights"]
    n_layers = len(summary.layers_ranked)
    for vs in found:
        assert (vs["level"], vs["n_docs"]) == ("layer", 2)
        assert vs["attribution_n_docs"] == 2  # the estimate on the scan's own documents
        assert math.isfinite(vs["pearson"]) and -1.0 <= vs["pearson"] <= 1.0
        assert math.isfinite(vs["kendall"]) and 0.0 <= vs["top3_overlap"] <= 1.0
        assert vs["layers"] == list(range(n_layers))
        assert len(vs["exact"]) == len(vs["attribution"]) == n_layers
        assert vs["exact"] == scan.scores("layer").tolist()
    atp, ig = found
    assert atp["attribution"] != ig["attribution"]  # two methods, two estimates
    figures = [path for path, _ in summary.figures["agreement"]]
    assert figures == [
        "report/attribution_vs_exact_atp.png",
        "report/attribution_vs_exact_ig-weights.png",
    ]
    assert all((out / path).exists() for path in figures)
    # a method whose ranking does not follow exact patching says so under its scatter
    for vs, (_, caption) in zip(found, summary.figures["agreement"], strict=True):
        assert vs["trusted"] == (vs["pearson"] >= TRUSTED_PEARSON)
        assert ("does not follow exact patching" in caption) == (not vs["trusted"])
    for method in ("atp", "ig-weights"):
        assert (out / "attribute" / method / "stage.json").exists()
    html = RunLayout(out).report_file.read_text()
    assert "Attribution vs exact patching" in html and "Pearson r" in html
    assert 'alt="attribution (atp) vs exact patching of each layer' in html
    assert 'alt="attribution (ig-weights) vs exact patching of each layer' in html

    # rerun: every stage, the scan included, is skipped
    assert main(argv) == 0
    assert "exact" in StudySummary.load(out).timings_s["skipped"]
