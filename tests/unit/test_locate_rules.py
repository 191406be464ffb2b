"""locate's rules and scores on hand-written diff and scan files."""

import json

import pandas as pd
import pytest

from sumcircuit.analysis.causal.exact import ExactResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.locate.registry import locator
from sumcircuit.analysis.locate.rules import LocateConfig, locate, select
from sumcircuit.errors import SumcircuitError

LAYERS = pd.DataFrame(
    {
        "layer": [0, 1, 2, 3, 4],
        "kl_mean": [0.1, 0.5, 0.2, 0.9, 0.5],
        "js_mean": [0.01, 0.02, 0.03, 0.04, 0.05],
        "delta_entropy_mean": [-0.3, 0.1, -0.05, 0.0, 0.2],
        "actmag_base": [1.0] * 5,
        "actmag_ft": [1.0] * 5,
        "actmag_rel_change": [0.0, -0.4, 0.1, 0.05, 0.0],
        "cosine": [1.0] * 5,
        "cka": [1.0] * 5,
        "weight_change": [0.01, 0.02, 0.05, 0.03, 0.04],
    }
)
HEADS = pd.DataFrame(
    {
        "layer": [0, 0, 1, 1],
        "head": [0, 1, 0, 1],
        "delta_entropy": [-0.2, 0.05, 0.3, -0.01],
        "q_value": [0.01, 0.2, 0.04, 0.9],
        "kl_base_ft": [0.4, 0.1, 0.3, 0.2],
        "js": [0.1, 0.1, 0.1, 0.1],
        "weight_change": [0.1, 0.2, 0.3, 0.4],
    }
)


def write_diff(directory, layers=LAYERS, heads=HEADS):
    directory.mkdir(parents=True, exist_ok=True)
    layers.to_csv(directory / "layers.csv", index=False)
    heads.to_csv(directory / "heads.csv", index=False)
    model = {"name": "base-model", "model_type": "llama", "layers": 5, "heads": 2}
    (directory / "diff.json").write_text(json.dumps({"provenance": {"models": {"base": model}}}))
    return str(directory)


@pytest.mark.parametrize(
    "level, score, rule, extra, expected",
    [
        ("layer", "kl", "topk", {"k": 3}, [1, 3, 4]),  # 0.9, then the 0.5 tie by layer order
        ("layer", "kl", "topk", {"k": 1}, [3]),
        ("layer", "entropy", "topk", {"k": 2}, [0, 4]),  # |ΔH|
        ("layer", "actmag", "topk", {"k": 1}, [1]),  # |relative change|
        ("layer", "weight", "zscore", {"z": 1.0}, [2]),  # mean .03 + std .0141 = .0441
        ("layer", "kl", "zscore", {"z": 0.5}, [3]),  # mean .44 + .5*.2871 = .584
        ("layer", "entropy", "fdr", {"q": 0.05}, [0, 1]),  # layers with a head q < .05
        ("head", "kl", "topk", {"k": 2}, [(0, 0), (1, 0)]),
        ("head", "entropy", "fdr", {"q": 0.05}, [(0, 0), (1, 0)]),
        ("head", "entropy", "fdr", {"q": 0.02}, [(0, 0)]),
        ("head", "weight", "topk", {"k": 1}, [(1, 1)]),
    ],
)
def test_rules(tmp_path, level, score, rule, extra, expected):
    diff = write_diff(tmp_path / "diff")
    circuit = locate(LocateConfig(diff=diff, level=level, score=score, rule=rule, **extra))
    got = circuit.layers if level == "layer" else circuit.heads
    assert got == expected
    assert circuit.model["name"] == "base-model" and circuit.score == score
    out = tmp_path / "circuit.json"
    circuit.save(out)
    assert Circuit.load(out).to_dict() == circuit.to_dict()


def test_control_diff_is_subtracted(tmp_path):
    diff = write_diff(tmp_path / "diff")
    control_layers = LAYERS.assign(kl_mean=[0.0, 0.0, 0.0, 0.85, 0.0])  # layer 3 changes anyway
    control = write_diff(tmp_path / "control", layers=control_layers)
    circuit = locate(LocateConfig(diff=diff, score="kl", k=1, control_diff=control))
    assert circuit.layers == [1]  # 0.5 − 0 beats 0.9 − 0.85
    assert circuit.scores["control_subtracted"] is True


def write_scan(directory, rows, level="layer"):
    columns = ("layer", "head", "sufficiency", "sufficiency_lo", "sufficiency_hi")
    rows = [dict(zip(columns, row, strict=True)) for row in rows]
    ExactResult(level, rows, m_base=-3.0, m_ft=-2.0, n_docs=4, timing={}).save(directory)
    return directory


def test_exact_score_reads_the_scan(tmp_path):
    diff = write_diff(tmp_path / "diff")
    rows = [(0, -1, 0.10, 0.0, 0.2), (1, -1, 0.60, 0.4, 0.8), (2, -1, 0.30, 0.1, 0.5)]
    rows += [(0, 0, 0.05, 0.0, 0.1), (1, 1, 0.20, 0.1, 0.3)]
    scan = write_scan(tmp_path / "scan", rows)
    assert ExactResult.load(scan).scores("layer").tolist() == [0.10, 0.60, 0.30]
    layer = locate(LocateConfig(diff=diff, score="exact", sources={"exact": str(scan)}, k=2))
    assert layer.layers == [1, 2] and layer.score == "exact"
    head = locate(
        LocateConfig(diff=diff, level="head", score="exact", sources=f"exact={scan}", k=1)
    )
    assert head.heads == [(1, 1)]
    assert locator("exact").rank("head", scan).scores.index.tolist() == [(0, 0), (1, 1)]


def test_old_spellings_still_work_with_a_deprecation_message(tmp_path, caplog):
    diff = write_diff(tmp_path / "diff")
    rows = [(0, -1, 0.10, 0.0, 0.2), (1, -1, 0.60, 0.4, 0.8), (2, -1, 0.30, 0.1, 0.5)]
    scan = write_scan(tmp_path / "scan", rows)
    config = LocateConfig(diff=diff, score="causal", scan=str(scan), k=1)
    assert (config.score, config.sources, config.scan) == ("exact", {"exact": str(scan)}, None)
    assert locate(config).layers == [1]
    assert "--score causal is deprecated; use --score exact" in caplog.text
    assert "--scan DIR is deprecated" in caplog.text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rule": "fdr", "score": "kl"}, "needs p-values"),
        ({"rule": "fdr", "score": "entropy", "control_diff": "x"}, "subtracts a diff"),
        ({"score": "exact"}, "pass --sources exact=DIR"),
        ({"score": "atp", "control_diff": "x", "sources": {"atp": "a"}}, "subtracts a diff"),
        ({"score": "actmag", "level": "head"}, "no head-level ranking"),
        ({"score": "last-k", "rule": "zscore"}, "does not apply to last-k"),
        ({"score": "nope"}, "unknown locator 'nope'"),
        ({"rule": "best"}, "unknown --rule"),
        ({"k": 0}, "--k"),
    ],
)
def test_bad_configs_are_clear_errors(kwargs, message):
    with pytest.raises(SumcircuitError, match=message):
        LocateConfig(diff="d", **kwargs)


def test_flat_scores_select_nothing_under_zscore_and_say_so(tmp_path):
    flat = LAYERS.assign(kl_mean=0.0)
    diff = write_diff(tmp_path / "diff", layers=flat)
    assert select(locator("kl").rank("layer", diff).scores, "zscore", z=1.0) == []
    with pytest.raises(SumcircuitError, match="every kl score .* is 0"):
        locate(LocateConfig(diff=diff, rule="zscore"))
    with pytest.raises(SumcircuitError, match="selected no layer"):  # flat, but not zero
        locate(
            LocateConfig(
                diff=write_diff(tmp_path / "d2", layers=LAYERS.assign(kl_mean=0.5)), rule="zscore"
            )
        )


def test_scan_with_missing_columns_is_rejected(tmp_path):
    write_scan(tmp_path, [(0, -1, 0.1, 0.0, 0.2)])
    data = json.loads((tmp_path / "exact.json").read_text())
    data["rows"] = [{"layer": 0, "head": -1, "effect": 0.1}]
    (tmp_path / "exact.json").write_text(json.dumps(data))
    with pytest.raises(SumcircuitError, match="exact.json.*lacks sufficiency"):
        ExactResult.load(tmp_path)


def test_diff_without_a_score_column_names_the_file(tmp_path):
    diff = write_diff(tmp_path / "diff", heads=HEADS.drop(columns="js"))
    with pytest.raises(SumcircuitError, match=r"heads\.csv' has no js column"):
        locate(LocateConfig(diff=diff, level="head", score="js"))


def test_a_circuits_score_is_a_registered_locator(caplog) -> None:
    """The list of scores comes from the registry: every locator (attribution methods and
    atp-trapezoid included), manual, and older names; anything else is one sentence."""
    for score in ("atp", "atp-trapezoid", "ig-weights", "exact", "kl", "manual", "causal"):
        assert Circuit(model={}, level="layer", rule="topk", score=score, layers=[1]).score == score
    with pytest.raises(SumcircuitError, match="circuit score 'attn-magic' is not a locator"):
        Circuit(model={}, level="layer", rule="topk", score="attn-magic", layers=[1])
    assert locator("ig-direct").candidate is False  # direct effects only: never the circuit
    assert locator("ig-activations").name == "ig-direct" and "deprecated" in caplog.text
    assert (
        locator("atp-trapezoid").cost_rank == locator("atp").cost_rank < locator("exact").cost_rank
    )
    assert locator("entropy").ranking == "absolute" and locator("kl").ranking == "signed"
