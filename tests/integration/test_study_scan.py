"""`sumcircuit run` with ``scan.limit`` > 0 on a tiny model: the exact layer scan runs between
attribute and faithfulness, faithfulness draws its ``exact`` locator, and the summary and report
compare the attribution with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from test_study_run import WORDS, _args

from sumcircuit.analysis.scan import ScanResult
from sumcircuit.cli import main
from sumcircuit.io import read_json


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
    sets = ["scan.limit=2", "scan.n_boot=200", "lora.arms=[standard]", "lora.epochs=1"]
    argv = _args(tiny_dirs["llama"], data, out) + [a for s in sets for a in ("--set", s)]
    assert main(argv) == 0

    scan = ScanResult.load(out / "scan")
    assert scan.level == "layer" and scan.n_docs == 2 and len(scan.doc_ids) == 2
    assert (out / "scan" / "stage.json").exists() and (out / "scan" / "scan.png").exists()
    assert scan.provenance["data"]["split"] == "validation"  # the diff's split, first documents
    summary = read_json(out / "summary.json")
    faith = summary["faithfulness"]
    assert "exact" in faith["areas"] and "atp" in faith["areas"]
    assert {"split": "validation", "limit": 2} in faith["documents"]["selection"]
    vs = summary["attribution_vs_exact"]
    assert (vs["level"], vs["n_docs"], vs["method"]) == ("layer", 2, "atp")
    assert vs["attribution_n_docs"] == 2  # the estimate on the scan's own documents
    assert math.isfinite(vs["pearson"]) and -1.0 <= vs["pearson"] <= 1.0
    assert math.isfinite(vs["kendall"]) and 0.0 <= vs["top3_overlap"] <= 1.0
    n_layers = len(summary["layers_ranked"])
    assert vs["layers"] == list(range(n_layers))
    assert len(vs["exact"]) == len(vs["attribution"]) == n_layers
    assert vs["exact"] == scan.scores("layer").tolist()
    assert summary["figures"]["agreement"][0][0] == "report/attribution_vs_exact.png"
    assert (out / "report" / "attribution_vs_exact.png").exists()
    html = (out / "report.html").read_text()
    assert "Attribution vs exact patching" in html and "Pearson r" in html
    assert 'alt="attribution (atp) vs exact patching of each layer' in html

    # rerun: every stage, the scan included, is skipped
    assert main(argv) == 0
    assert "scan" in read_json(out / "summary.json")["timings_s"]["skipped"]
