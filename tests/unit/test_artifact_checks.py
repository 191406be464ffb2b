"""Artifacts checked against each other and against their folders: a result's predictions lie in
its own folder, export-peft never writes into an adapter or result folder, no config number is
NaN or inf, and a data record's document and summary are text."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.locate.registry import Ranking, check_computed_on, same_model
from sumcircuit.analysis.locate.rules import LocateConfig
from sumcircuit.cli import main
from sumcircuit.configs import NotFiniteError, coerce
from sumcircuit.data.sources import load_dataset
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.evaluate import EvalResult, compare_results
from sumcircuit.evaluation.rouge import METRICS
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.peft_export import PeftExportConfig


# -- an evaluation's predictions lie in its own folder ----------------------------------------
def _eval(tag: str) -> EvalResult:
    predictions = pd.DataFrame(
        {
            "id": ["x1", "x2"],
            "document": ["Doc one.", "Doc two."],
            "reference": ["Ref one.", "Ref two."],
            "prediction": [f"{tag} one.", f"{tag} two."],
            **{m: [0.5, 0.25] if tag == "a" else [0.1, 0.2] for m in METRICS},
        }
    )
    scores = {m: {"f": 0.3, "ci95": [0.1, 0.5]} for m in METRICS} | {"n": 2}
    return EvalResult(scores, {"num_beams": 1}, 1.5, {"seed": 0}, predictions)


def _point(result_json: Path, name: str) -> None:
    data = json.loads(result_json.read_text())
    data["predictions"] = name
    result_json.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/passwd", "which is an absolute path"),
        ("../b/result.predictions.jsonl", "which leaves"),  # another arm's, in a study run
        ("sub/../../b/result.predictions.jsonl", "which leaves"),
    ],
)
def test_a_predictions_path_outside_the_result_folder_is_refused(
    tmp_path: Path, name: str, why: str
) -> None:
    a = _eval("a").save(tmp_path / "a")
    _eval("b").save(tmp_path / "b")
    assert EvalResult.load(tmp_path / "a").predictions["prediction"][0] == "a one."
    _point(a, name)
    with pytest.raises(SumcircuitError) as info:
        EvalResult.load(tmp_path / "a")
    message = str(info.value)
    assert f"names its predictions {name!r}, {why}" in message and "\n" not in message
    assert "result.predictions.jsonl" in message.split(why)[1]  # names where they belong


def test_symlinked_predictions_are_refused(tmp_path: Path) -> None:
    a = _eval("a").save(tmp_path / "a")
    _eval("b").save(tmp_path / "b")
    (tmp_path / "a" / "linked.jsonl").symlink_to(tmp_path / "b" / "result.predictions.jsonl")
    _point(a, "linked.jsonl")
    with pytest.raises(SumcircuitError, match=r"'linked\.jsonl', which is a symlink"):
        EvalResult.load(a)
    os.symlink(tmp_path / "b", tmp_path / "a" / "via")
    _point(a, "via/result.predictions.jsonl")
    with pytest.raises(SumcircuitError, match=r"which lies under the symlink 'via'"):
        EvalResult.load(a)


def test_compare_refuses_two_results_reading_one_predictions_file(tmp_path: Path) -> None:
    """Side by side in one folder, a.json naming b's predictions stays inside its folder, but
    compare would pair B with itself."""
    a, b = _eval("a").save(tmp_path / "a.json"), _eval("b").save(tmp_path / "b.json")
    assert compare_results(a, b, n_boot=50)["rougeL"]["mean_diff"] != 0.0
    _point(a, "b.predictions.jsonl")
    with pytest.raises(SumcircuitError, match="read the same predictions file") as info:
        compare_results(a, b, n_boot=50)
    assert "pair a model with itself" in str(info.value)
    assert compare_results(b, b, n_boot=50)["rougeL"]["mean_diff"] == 0.0  # asked for plainly


# -- export-peft never writes into an adapter or result folder --------------------------------
def _circuit(tmp_path: Path) -> str:
    identity = {"name": "tiny", "model_type": "llama", "layers": 4, "heads": 4, "kv_heads": 2}
    path = tmp_path / "circuit.json"
    Circuit(model=identity, level="layer", rule="manual", score="manual", layers=[1]).save(path)
    return str(path)


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("files", "what"),
    [
        (
            {
                "adapter_config.json": '{"r": 8, "lora_alpha": 16}',
                "adapter_model.safetensors": "weights",
                "training.json": "{}",
            },
            "already holds a LoRA adapter (adapter_config.json, adapter_model.safetensors",
        ),
        ({"result.json": "{}", "result.predictions.jsonl": ""}, "already holds other files"),
        ({"adapter_config.json": "{}", "notes.txt": "mine"}, "already holds a LoRA adapter"),
    ],
)
def test_export_peft_refuses_an_existing_adapter_or_result_folder(
    tmp_path: Path, capsys, files: dict[str, str], what: str
) -> None:
    out = tmp_path / "adapter"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    before = _snapshot(out)
    code = main(["export-peft", _circuit(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --out ")
    assert what in err and "give a new or empty folder" in err
    assert _snapshot(out) == before


def test_export_peft_writes_a_new_or_empty_folder_or_its_own_export_again(
    tmp_path: Path, capsys
) -> None:
    circuit = _circuit(tmp_path)
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new", tmp_path / "empty", tmp_path / "new"):  # the last: again
        assert main(["export-peft", circuit, "--out", str(out), "--rank", "4"]) == 0
        assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    (tmp_path / "file").write_text("x")
    capsys.readouterr()
    assert main(["export-peft", circuit, "--out", str(tmp_path / "file")]) == 2
    assert "file' is a file; give a new or empty folder" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "x"


# -- no config number is NaN or inf ------------------------------------------------------------
def test_alpha_nan_is_refused_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    out = tmp_path / "peft"
    assert main(["export-peft", _circuit(tmp_path), "--out", str(out), "--alpha", "nan"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --alpha must be a finite number, got 'nan'\n"
    assert not out.exists()
    with pytest.raises(SumcircuitError, match="--alpha must be a finite number, got inf"):
        PeftExportConfig(circuit="c", out="o", alpha=math.inf)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", " nan "])
def test_every_float_field_is_finite(text: str) -> None:
    with pytest.raises(NotFiniteError, match=f"x must be a finite number, got {text!r}"):
        coerce(text, float, "x")
    with pytest.raises(NotFiniteError, match="finite"):
        coerce(text, float | None, "x")  # not "must be a number or null"
    with pytest.raises(NotFiniteError, match="finite"):
        coerce(["0.5", text], list[float], "x")
    with pytest.raises(NotFiniteError, match="finite"):
        coerce(float(text), float, "x")  # from YAML (.nan) or Python
    assert coerce("1e-4", float, "x") == 1e-4 and coerce(3, float, "x") == 3.0


def test_nan_learning_rates_and_thresholds_say_so(capsys) -> None:
    with pytest.raises(SumcircuitError, match="--lr must be a finite number, got 'nan'"):
        FinetuneConfig(lr="nan")
    with pytest.raises(SumcircuitError, match="--z must be a finite number"):
        LocateConfig(diff="d", rule="zscore", z=math.nan)
    with pytest.raises(SumcircuitError, match="--q must be a finite number"):
        LocateConfig(diff="d", q="nan")  # not "must lie strictly between 0 and 1"
    code = main(["run", "--set", "lora.lr=nan", "--out", "/nonexistent/never"])
    assert code == 2 and "lora.lr must be a finite number" in capsys.readouterr().err


# -- data fields are text -----------------------------------------------------------------------
def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize(
    ("record", "said"),
    [
        ({"document": {"text": "a b c"}, "summary": "s"}, "field 'document' is an object"),
        ({"document": "a b c", "summary": 42}, "field 'summary' is a number (42)"),
        ({"document": ["a", {"t": 1}], "summary": "s"}, "field 'document' is a list holding an"),
        ({"document": "a b", "summary": "s", "id": {"n": 1}}, "field 'id' is an object"),
        ({"document": True, "summary": "s"}, "field 'document' is true/false"),
    ],
)
def test_a_data_field_that_is_not_text_is_refused(tmp_path: Path, record, said) -> None:
    good = {"document": "one two three", "summary": "one"}
    path = _jsonl(tmp_path / "d.jsonl", [good, record])
    with pytest.raises(SumcircuitError) as info:
        load_dataset(path)
    message = str(info.value)
    assert f"d.jsonl record 2 {said}" in message and "not text" in message
    assert "\n" not in message


def test_a_non_string_document_is_one_line_from_the_cli(tmp_path: Path, capsys) -> None:
    rows = [{"document": "one two", "summary": "one"}, {"document": {"text": "x"}, "summary": "y"}]
    assert main(["data", "show", _jsonl(tmp_path / "d.jsonl", rows)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "record 2 field 'document' is an object" in err


def test_text_lists_and_numeric_ids_still_load(tmp_path: Path) -> None:
    rows = [
        {"id": 7, "document": ["first line", "second line"], "summary": ["a", "b"]},
        {"id": "x", "document": "plain", "summary": "text", "extra": {"any": "thing"}},
        {"document": None, "summary": "dropped as empty"},
    ]
    data = load_dataset(_jsonl(tmp_path / "d.jsonl", rows))
    examples = {e.id: e for split in data.splits.values() for e in split}
    assert examples["7"].document == "first line\nsecond line" and examples["x"].summary == "text"
    assert data.report["dropped_empty"] == 1


# -- rankings carry the model pair they were computed on ------------------------------------------
BASE = {"name": "base", "sha256": "a" * 64, "model_type": "llama", "layers": 4, "heads": 4}
FT = {"name": "ft", "sha256": "b" * 64, "model_type": "llama", "layers": 4, "heads": 4}
OTHER = {"name": "ft2", "sha256": "c" * 64, "model_type": "llama", "layers": 4, "heads": 4}


def test_same_model_is_decided_by_checksum_else_by_name_and_shape() -> None:
    assert same_model(FT, FT | {"name": "/abs/path/ft"})  # one checksum, two spellings
    assert not same_model(FT, OTHER | {"name": "ft"})  # one name, other weights
    bare = {k: v for k, v in FT.items() if k != "sha256"}
    assert same_model(bare, FT) and not same_model(bare, bare | {"layers": 2})


def test_a_ranking_of_another_pair_is_refused() -> None:
    ranking = Ranking("kl", pd.Series([1.0, 0.0]), directory="runs/diff")
    ranking.models = {"base": BASE, "finetuned": OTHER}
    with pytest.raises(SumcircuitError) as info:
        ranking.check_models({"base": BASE, "finetuned": FT}, "models faithfulness patches")
    message = str(info.value)
    assert message.startswith(
        "the kl ranking in 'runs/diff' was computed with finetuned model 'ft2' (sha256 cccc"
    )
    assert "not 'ft' (sha256 bbbb" in message and "of the models faithfulness patches" in message
    ranking.models = {"base": FT, "finetuned": BASE}  # the pair swapped
    with pytest.raises(SumcircuitError, match="computed with base model 'ft'"):
        ranking.check_models({"base": BASE, "finetuned": FT}, "models")
    ranking.models = {"base": BASE, "finetuned": FT}
    ranking.check_models({"base": BASE, "finetuned": FT}, "models")  # the same pair: fine
    baseline = Ranking("last-k", pd.Series([0.0, 1.0]))  # reads no model
    baseline.check_models({"base": BASE, "finetuned": FT}, "models")


def test_an_unrecorded_identity_is_logged_not_guessed(caplog) -> None:
    check_computed_on({}, {"base": BASE, "finetuned": FT}, "the old diff", "models")
    assert "the old diff records no base model identity" in caplog.text
