"""diff → locate → plot through the CLI on tiny saved models."""

import json

import pandas as pd
from test_diff_tiny import write_data

from sumcircuit.analysis.diff.stats import HEAD_COLUMNS, LAYER_COLUMNS
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.cli import main
from sumcircuit.models.tiny import save_tiny


def test_diff_locate_plot(tmp_path, capsys):
    base = save_tiny("llama", tmp_path / "base", seed=0, n_layers=3)
    ft = save_tiny("llama", tmp_path / "ft", seed=1, n_layers=3)
    data = write_data(tmp_path / "d.jsonl", 14)
    out = tmp_path / "diff"
    argv = ["diff", "--base", str(base), "--finetuned", str(ft), "--data", data]
    assert main([*argv, "--out", str(out), "--n-boot", "100", "--per-doc", "--limit", "12"]) == 0
    assert "heads with lower entropy" in capsys.readouterr().out
    assert list(pd.read_csv(out / "heads.csv").columns) == HEAD_COLUMNS
    assert list(pd.read_csv(out / "layers.csv").columns) == LAYER_COLUMNS
    summary = json.loads((out / "diff.json").read_text())
    assert summary["n_docs"] == 12 and summary["region"] == "summary"
    assert summary["provenance"]["models"]["finetuned"]["source"] == str(ft)
    per_doc = pd.read_parquet(out / "per_doc.parquet")
    assert len(per_doc) == 12 * 3 * 4 and per_doc["doc_id"].nunique() == 12

    circuit_path = tmp_path / "circuit.json"
    assert main(["locate", "--diff", str(out), "--out", str(circuit_path), "--k", "2"]) == 0
    circuit = Circuit.load(circuit_path)
    assert circuit.layers == sorted(summary["layers_ranked"][:2])
    assert circuit.model["source"] == str(base)

    assert main(["plot", "--diff", str(out)]) == 0
    for name in ("heatmap_delta_entropy", "heatmap_kl", "layer_profiles"):
        for fmt in ("png", "svg"):
            assert (out / "plots" / f"{name}.{fmt}").stat().st_size > 1000

    bad = main(
        [
            "diff",
            "--finetuned",
            str(ft),
            "--base",
            str(base),
            "--data",
            data,
            "--region",
            "summary",
            "--batch-size",
            "0",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert bad == 2
