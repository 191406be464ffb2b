"""Every stage result owns its files: round trips, and one clear error per missing or damaged
file (never a JSONDecodeError, KeyError or pandas error)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sumcircuit.analysis.causal.exact import ExactResult
from sumcircuit.analysis.causal.validate import ValidateResult
from sumcircuit.analysis.diff.run import DiffResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.evaluate import EvalResult
from sumcircuit.evaluation.rouge import METRICS
from sumcircuit.models.trained import CurvePoint, EpochRecord, TrainingResult

L, H = 2, 3


def make_diff() -> DiffResult:
    heads = pd.DataFrame(
        {
            "layer": np.repeat(np.arange(L), H),
            "head": np.tile(np.arange(H), L),
            "delta_entropy": [-0.2, 0.1, 0.0, 0.3, -0.4, 0.05],
            "q_value": [0.01, 0.5, 0.9, 0.04, 0.001, 0.7],
            "kl_base_ft": [0.1, 0.3, 0.2, 0.6, 0.6, 0.1],
            "js": [0.01] * 6,
            "weight_change": [0.1] * 6,
        }
    )
    layers = pd.DataFrame(
        {
            "layer": [0, 1],
            "kl_mean": [0.2, 0.4333],
            "js_mean": [0.01, 0.01],
            "delta_entropy_mean": [-0.0333, -0.0167],
            "actmag_rel_change": [0.1, -0.2],
            "cosine": [0.99, 0.95],
            "cka": [0.98, 0.9],
            "weight_change": [0.01, 0.02],
        }
    )
    summary = {
        "n_docs": 4,
        "n_layers": L,
        "n_heads": H,
        "layers_ranked": [1, 0],
        "layer_ci95": {"kl_mean": [[0.1, 0.3], [0.3, 0.5]]},
        "provenance": {"models": {"base": {"name": "b"}, "finetuned": {"name": "f"}}},
    }
    weights = pd.DataFrame({"layer": [0], "head": [0], "q": [0.1]})
    params = pd.DataFrame({"name": ["w"], "change": [0.5]})
    per_doc = pd.DataFrame({"doc_id": ["a", "b"], "layer": [0, 1], "head": [0, 0], "kl": [1.0, 2]})
    return DiffResult(summary, heads, layers, weights, params, per_doc)


def make_scan() -> ExactResult:
    rows = [
        {"layer": 0, "head": -1, "sufficiency": 0.2, "sufficiency_lo": 0.1, "sufficiency_hi": 0.3},
        {"layer": 1, "head": -1, "sufficiency": 0.7, "sufficiency_lo": 0.5, "sufficiency_hi": 0.9},
    ]
    return ExactResult("layer", rows, m_base=-3.0, m_ft=-2.5, n_docs=4, timing={"total_s": 1.0})


def make_circuit() -> Circuit:
    model = {"name": "b", "model_type": "llama", "layers": L, "heads": H}
    return Circuit(model, "head", "topk", "kl", layers=[], heads=[(1, 2), (0, 1)])


def make_causal() -> ValidateResult:
    measure = {"value": 0.5, "ci95": [0.2, 0.8]}
    control = {"components": "layers [0]", "sufficiency": measure, "necessity": measure}
    return ValidateResult(
        m_base=-3.0,
        m_ft=-2.0,
        delta={"value": 1.0, "ci95": [0.8, 1.2]},
        sufficiency=measure,
        necessity=measure,
        controls=[control],
        random_percentile={"sufficiency": {"value": 50.0, "ci95": [0.0, 100.0]}},
        n_docs=4,
        circuit=make_circuit().to_dict(),
        ablation="patch",
        per_doc={"id": ["a"], "m_base": [-3.0]},
        timing={"total_s": 1.0},
    )


def make_training() -> TrainingResult:
    epochs = [EpochRecord(1, 2.0, 1.9, 3.0, 100.0, 0.2), EpochRecord(2, 1.5, 1.6, 3.0, 110.0)]
    return TrainingResult(
        trainable_params=10,
        total_params=100,
        epochs=epochs,
        wall_s=6.0,
        config={"method": "lora", "layers": [1]},
        config_hash="abc",
        provenance={"models": {"base": {"name": "b"}}},
        curve=[CurvePoint(0, 0.0, 0, 2.1), CurvePoint(2, 1.0, 8, 1.9, 0.2)],
    )


def make_eval() -> EvalResult:
    predictions = pd.DataFrame(
        {
            "id": ["x1", "x2"],
            "document": ["Doc one.", "Doc two."],
            "reference": ["Ref one.", "Ref two."],
            "prediction": ["Pred one.", "Préd two."],
            **{m: [0.5, 0.25] for m in METRICS},
        }
    )
    scores = {m: {"f": 0.375, "ci95": [0.25, 0.5]} for m in METRICS} | {"n": 2}
    return EvalResult(scores, {"num_beams": 1}, 1.5, {"seed": 0}, predictions)


MAKERS = {
    "diff": make_diff,
    "scan": make_scan,
    "circuit": make_circuit,
    "causal": make_causal,
    "training": make_training,
    "eval": make_eval,
}


def same(a, b) -> None:
    """Two results hold the same data (frames compared by value)."""
    da, db = a.to_dict(), b.to_dict()
    assert json.dumps(da, sort_keys=True, default=str) == json.dumps(
        db, sort_keys=True, default=str
    )


@pytest.mark.parametrize("kind", list(MAKERS))
def test_round_trip(kind, tmp_path):
    result = MAKERS[kind]()
    cls = type(result)
    result.save(tmp_path / "r")
    loaded = cls.load(tmp_path / "r")
    same(loaded, result)
    pd.testing.assert_frame_equal(loaded.to_frame(), result.to_frame(), check_dtype=False)
    again = cls.from_dict(json.loads(json.dumps(result.to_dict())))
    same(again, result)
    assert isinstance(result.to_frame(), pd.DataFrame) and len(result.to_frame()) > 0
    assert not list(Path(tmp_path / "r").glob(".*.tmp"))  # atomic writes leave nothing behind


@pytest.mark.parametrize("kind", ["circuit", "eval"])
def test_file_path_or_directory(kind, tmp_path):
    """Users pass ``--circuit path/circuit.json`` (and ``--out eval.json``): both forms work."""
    result = MAKERS[kind]()
    cls = type(result)
    written = result.save(tmp_path / "mine.json")
    assert written == tmp_path / "mine.json" and written.is_file()
    same(cls.load(tmp_path / "mine.json"), result)
    in_dir = result.save(tmp_path / "stage")
    assert in_dir == tmp_path / "stage" / cls.FILE
    same(cls.load(tmp_path / "stage"), result)
    same(cls.load(in_dir), result)  # the file inside a directory, named directly


def test_evaluation_keeps_its_layout(tmp_path):
    make_eval().save(tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text())["predictions"] == "a.predictions.jsonl"
    assert len((tmp_path / "a.predictions.jsonl").read_text().splitlines()) == 2
    make_eval().save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "result.json",
        "result.predictions.jsonl",
    ]


def test_diff_queries():
    diff = make_diff()
    assert diff.n_layers == L and diff.layers_ranked == [1, 0]
    assert diff.scores("layer", "kl").tolist() == [0.2, 0.4333]
    assert diff.scores("head", "entropy").loc[(1, 1)] == -0.4
    assert diff.head_grid("kl").shape == (L, H)
    assert diff.head_grid("kl")[1].tolist() == [0.6, 0.6, 0.1]
    assert diff.significant_heads(0.05) == [(0, 0), (1, 0), (1, 1)]
    assert diff.top_heads(1, 2) == [0, 1]  # tie at 0.6: lower head first
    assert diff.top_heads(0, 1, "kl") == [1]
    assert diff.layer_ci("kl").shape == (L, 2) and diff.layer_ci("cosine") is None
    assert diff.models["finetuned"] == {"name": "f"}
    with pytest.raises(SumcircuitError, match="no per-head actmag"):
        diff.scores("head", "actmag")
    with pytest.raises(SumcircuitError, match="unknown measure"):
        diff.scores("layer", "bogus")


def test_diff_layer_scores_per_doc():
    diff = make_diff()
    with pytest.raises(SumcircuitError, match="no kl_base_ft column"):
        diff.layer_scores_per_doc("kl")  # make_diff's per_doc is not a diff's layout
    docs, layer, head = np.meshgrid(["b", "a"], np.arange(L), np.arange(H), indexing="ij")
    kl = np.arange(2 * L * H, dtype=float)  # doc b: 0..5, doc a: 6..11, layer-major
    diff.per_doc = pd.DataFrame(
        {
            "doc_id": docs.ravel(),
            "layer": layer.ravel(),
            "head": head.ravel(),
            "kl_base_ft": kl,
            "entropy_base": np.ones(2 * L * H),
            "entropy_ft": kl,
        }
    )
    # documents sorted by id (a, then b); each cell the mean over the layer's 3 heads
    assert diff.layer_scores_per_doc("kl").tolist() == [[7.0, 10.0], [1.0, 4.0]]
    assert diff.layer_scores_per_doc("entropy").tolist() == [[6.0, 9.0], [0.0, 3.0]]
    values, den = diff.layer_parts_per_doc("kl")
    assert den is None and values.index.tolist() == ["a", "b"]
    assert values.to_numpy().tolist() == [[7.0, 10.0], [1.0, 4.0]]
    assert diff.layer_parts_per_doc("actmag") is None  # a table written before ActMag was kept
    # ActMag per document: doc a norms 2 -> 3 over 1 token, doc b 1 -> 1 over 3 tokens (layer 0)
    diff.per_doc["n_positions"] = np.where(docs.ravel() == "a", 1, 3)
    diff.per_doc["actmag_base"] = np.where(docs.ravel() == "a", 2.0, 1.0)
    diff.per_doc["actmag_ft"] = np.where(docs.ravel() == "a", 3.0, 1.0)
    num, den = diff.layer_parts_per_doc("actmag")
    assert num.loc["a"].tolist() == [1.0, 1.0] and den.loc["b"].tolist() == [3.0, 3.0]
    assert (num.sum() / den.sum()).tolist() == [0.2, 0.2]  # (3+3 - (2+3)) / (2+3)
    with pytest.raises(SumcircuitError, match="weight has no per-document values"):
        diff.layer_parts_per_doc("weight")
    diff.per_doc = None
    assert diff.layer_scores_per_doc("kl") is None
    assert diff.layer_parts_per_doc("kl") is None


def test_scan_queries():
    scan = make_scan()
    assert scan.scores("layer").tolist() == [0.2, 0.7]
    assert scan.ci("layer").tolist() == [[0.1, 0.3], [0.5, 0.9]]
    with pytest.raises(SumcircuitError, match="no head-level rows"):
        scan.scores("head")


# -- damaged files: (result, file to damage, how) ------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _malformed(path: Path) -> None:
    if path.suffix == ".json":
        path.write_text('{"n": 2, "rouge1": ')
    elif path.suffix == ".jsonl":
        path.write_text('{"id": "x1"}\nnot json\n')
    elif path.suffix == ".csv":
        path.write_text("layer,head,kl_base_ft\nzero,one,0.1\n")
    else:
        path.write_bytes(b"PAR1 not a parquet file")


def _wrong_shape(path: Path) -> None:
    """Valid JSON of the wrong shape, or a CSV with a column missing or rows cut at a line."""
    if path.suffix == ".json":
        path.write_text("[1, 2, 3]\n")
    elif path.suffix == ".jsonl":
        path.write_text('{"id": "x1"}\n')
    elif path.suffix == ".csv":
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:-1]))  # a whole row lost
    else:
        pytest.skip("parquet has no line structure")


DAMAGES = {"missing": Path.unlink, "truncated": _truncate, "malformed": _malformed}
DAMAGES["wrong shape"] = _wrong_shape
FILES = [
    ("diff", "diff.json"),
    ("diff", "heads.csv"),
    ("diff", "layers.csv"),
    ("diff", "per_doc.parquet"),
    ("scan", "exact.json"),
    ("circuit", "circuit.json"),
    ("causal", "validate.json"),
    ("training", "training.json"),
    ("eval", "result.json"),
    ("eval", "result.predictions.jsonl"),
]


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("kind, name", FILES)
def test_damaged_file_is_one_clear_sentence(kind, name, damage, tmp_path):
    if damage == "missing" and name == "per_doc.parquet":
        pytest.skip("per_doc.parquet is optional")
    result = MAKERS[kind]()
    result.save(tmp_path)
    DAMAGES[damage](tmp_path / name)
    with pytest.raises(SumcircuitError) as info:
        type(result).load(tmp_path)
    message = str(info.value)
    assert repr(str(tmp_path / name)) in message or str(tmp_path / name) in message
    assert "re-run" in message or "keep it beside" in message
    assert "\n" not in message


def test_missing_result_names_the_stage(tmp_path):
    with pytest.raises(SumcircuitError, match=r"does not exist; re-run the diff stage"):
        DiffResult.load(tmp_path / "nowhere")
    with pytest.raises(SumcircuitError, match=r"circuit\.json' does not exist.*locate"):
        Circuit.load(tmp_path / "circuit.json")


def test_unknown_keys_are_named(tmp_path):
    data = make_circuit().to_dict() | {"colour": "red"}
    (tmp_path / "circuit.json").write_text(json.dumps(data))
    with pytest.raises(SumcircuitError, match=r"circuit\.json' is damaged .*colour"):
        Circuit.load(tmp_path)


def test_missing_key_is_named(tmp_path):
    make_causal().save(tmp_path)
    data = json.loads((tmp_path / "validate.json").read_text())
    del data["m_base"]
    (tmp_path / "validate.json").write_text(json.dumps(data))
    with pytest.raises(
        SumcircuitError, match=r"validate\.json' is damaged \(the ValidateResult lacks m_base\)"
    ):
        ValidateResult.load(tmp_path)


def test_diff_without_weight_tables_round_trips(tmp_path):
    diff = make_diff()
    diff.head_weights, diff.parameter_weights, diff.per_doc = pd.DataFrame(), pd.DataFrame(), None
    diff.save(tmp_path)
    loaded = DiffResult.load(tmp_path)
    assert loaded.head_weights.empty and loaded.per_doc is None
    loaded.save(tmp_path / "again")
    same(DiffResult.load(tmp_path / "again"), diff)
