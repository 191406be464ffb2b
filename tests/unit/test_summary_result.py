"""``StudySummary`` owns ``RUN/summary.json``: it round-trips, answers the report's queries, and
refuses a damaged file with one sentence naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.layout import RunLayout
from sumcircuit.report.summary_result import LORA_COLUMNS, StudySummary

DIFF = {"mean_diff": 0.1, "ci95": [0.05, 0.15], "p_value": 0.01, "n": 9}


def make_summary() -> StudySummary:
    return StudySummary(
        model="tiny",
        finetuned=None,
        dataset="pairs.jsonl",
        preset="quick",
        n_docs_analysed=4,
        entropy={"frac_heads_decreased": 0.5, "ci95": [0.25, 0.75], "frac_heads_sig_decreased": 0},
        layers_ranked=[1, 0],
        circuit={"layers": [1], "heads": [], "rule": "topk", "score": "kl"},
        causal={"m_base": -3.0, "m_ft": -2.0, "sufficiency": 0.5, "n_controls": 0},
        faithfulness={"level": "layer", "areas": {"kl": {"cpr": 0.4, "cmd": 0.6}}},
        attribution_vs_exact=None,
        lora={
            "base": {"rougeL": 0.1, "rougeL_ci95": [0.05, 0.15], "trainable_params": 0},
            "full": {"rougeL": 0.3, "trainable_params": None, "external": {"path": "/ft"}},
            "targeted": {"rougeL": 0.2, "loglik": -2.0, "trainable_params": 10, "layers": [1]},
        },
        comparisons={
            "vs_standard": {"targeted": {"rougeL": DIFF, "loglik": None}},
            "vs_base": {"targeted": {"rougeL": DIFF, "loglik": DIFF}},
        },
        targeted_vs_random=None,
        paper_claims=[
            {"claim": "c", "paper": "p", "ours": "o", "holds": True, "evidence": "e"},
            {"claim": "old", "paper": "p", "ours": "o", "holds": None, "verdicts": None},
        ],
        figures={"diff": [("diff/plots/heatmap_kl.png", "heatmap kl")], "agreement": []},
        examples=[{"id": "d0", "document": "doc", "reference": "ref", "arms": {"base": "x"}}],
        timings_s={"diff": 1.5, "skipped": ["finetune"]},
        config={"seeds": [0]},
        provenance={"sumcircuit": "0"},
    )


def test_round_trip(tmp_path: Path) -> None:
    summary = make_summary()
    path = summary.save(tmp_path)
    assert path == RunLayout(tmp_path).summary_file
    loaded = StudySummary.load(tmp_path)
    assert loaded == summary  # figures come back as (path, caption) tuples
    assert json.loads(path.read_text()) == json.loads(json.dumps(summary.to_dict()))
    assert set(json.loads(path.read_text())) == set(StudySummary().to_dict())  # every key
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_older_summary_without_later_sections_loads(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"model": "tiny", "lora": {}}))
    old = StudySummary.load(tmp_path)
    assert old.model == "tiny" and old.faithfulness == {} and old.attribution_vs_exact is None
    assert old.claims() == [] and old.differences() == [] and old.figures_of("diff") == []


def test_queries() -> None:
    summary = make_summary()
    claims = summary.claims()
    assert [c["verdicts"] for c in claims] == [{}, {}]  # absent or null: no per-outcome verdict
    assert claims[0]["evidence"] == "e" and claims[1]["evidence"] == ""
    rows = summary.lora_rows()
    assert list(rows) == ["base", "full", "targeted"]
    assert all(list(row)[: len(LORA_COLUMNS)] == list(LORA_COLUMNS) for row in rows.values())
    assert rows["base"]["loglik"] is None and rows["targeted"]["loglik"] == -2.0
    assert summary.differences() == [
        ("targeted", "standard", {"rougeL": DIFF, "loglik": None}),
        ("targeted", "base", {"rougeL": DIFF, "loglik": DIFF}),
    ]
    assert summary.figures_of("diff") == [("diff/plots/heatmap_kl.png", "heatmap kl")]
    assert summary.figures_of("lora") == []


def test_lora_table_as_a_frame() -> None:
    frame = make_summary().to_frame()
    assert isinstance(frame, pd.DataFrame) and frame.index.name == "model"
    assert list(frame.index) == ["base", "full", "targeted"]
    assert list(frame.columns) == list(LORA_COLUMNS)
    assert frame.loc["targeted", "rougeL"] == 0.2 and frame.loc["full", "external"] == {
        "path": "/ft"
    }
    assert StudySummary().to_frame().empty


# -- damaged files --------------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _set(key: str, value: object):
    def damage(path: Path) -> None:
        data = json.loads(path.read_text())
        path.write_text(json.dumps(data | {key: value}))

    return damage


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "not valid JSON"),
        (lambda p: p.write_text("[1, 2]"), "a JSON object was expected, not list"),
        (_set("lora", [1, 2]), "lora must be a JSON object, not list"),
        (_set("paper_claims", {"c": 1}), "paper_claims must be a list, not dict"),
        (_set("n_docs_analysed", "four"), "n_docs_analysed must be a whole number or null"),
        (_set("n_docs_analysed", True), "n_docs_analysed must be a whole number or null"),
        (_set("attribution_vs_exact", "x"), "attribution_vs_exact must be a list or null"),
        (_set("figures", {"diff": ["a.png"]}), "figures of 'diff' must be a list of [path, "),
        (_set("colour", "red"), "unknown key(s) ['colour']"),
    ],
)
def test_a_damaged_summary_is_one_sentence_naming_the_file(damage, reason, tmp_path: Path) -> None:
    make_summary().save(tmp_path)
    damage(tmp_path / "summary.json")
    with pytest.raises(SumcircuitError) as info:
        StudySummary.load(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{str(tmp_path / 'summary.json')!r} is damaged (")
    assert reason in message and "\n" not in message
    assert message.endswith(
        f"re-run the study into it (sumcircuit run --out {tmp_path}): finished stages are "
        "skipped and the summary is written again"
    )


def test_a_missing_summary_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SumcircuitError, match=r"summary\.json' does not exist; re-run the study"):
        StudySummary.load(tmp_path)
