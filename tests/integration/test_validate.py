"""``sumcircuit validate`` and ``sumcircuit scan`` end to end on tiny saved models (Llama with GQA;
GPT-2 as the mismatched model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sumcircuit.analysis.causal.exact import ExactResult
from sumcircuit.analysis.causal.validate import ValidateResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.cli import main
from sumcircuit.models.archs import Arch
from sumcircuit.models.loader import load_model
from sumcircuit.models.tiny import gpt2_tokenizer

DOCS = [
    ("The council approved the new park on Monday after a long debate.", "Park approved."),
    ("Rain fell across the north of the country, flooding many roads.", "Floods in the north."),
    ("A local team won the cup final for the first time in fifty years.", "Team wins the cup."),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def save_finetuned(base_dir: Path, out: Path, *, outside: bool = False) -> Path:
    """The tiny base with q/k/v and MLP weights perturbed, saved like a fine-tune; with
    ``outside``, also each layer's output projection W_O and its input norm, which a layer node
    (the block's write) carries and a head node (before W_O) does not."""
    model = load_model(str(base_dir)).model
    arch = Arch.from_model(model)
    gen = torch.Generator().manual_seed(1)
    for layer in range(arch.n_layers):
        names = {arch.proj_name(layer, w) for w in "qkv"} | set(arch.mlp_linear_names(layer))
        if outside:
            names |= {arch.proj_name(layer, "o"), f"model.layers.{layer}.input_layernorm"}
        for name in sorted(names):
            weight = model.get_submodule(name).weight
            scale = weight.std() if weight.std() > 0 else 0.1  # a norm's weights are all 1
            weight.data += 0.5 * scale * torch.randn(weight.shape, generator=gen)
    model.save_pretrained(out)
    gpt2_tokenizer().save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def setup(tiny_dirs, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("validate")
    data = root / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": str(i), "document": d, "summary": s, "split": "validation"}) + "\n"
            for i, (d, s) in enumerate(DOCS)
        )
    )
    return {
        "root": root,
        "data": data,
        "base": tiny_dirs["llama"],
        "ft": save_finetuned(tiny_dirs["llama"], root / "llama-ft"),
        "gpt2": tiny_dirs["gpt2"],
        "identity": load_model(str(tiny_dirs["llama"])).identity,
    }


def write_circuit(setup: dict, name: str, **kwargs) -> Path:
    identity = setup["identity"]
    model = {k: identity.get(k) for k in ("name", "sha256", "model_type", "layers", "heads")}
    fields = {"level": "layer", "rule": "manual", "score": "manual", "layers": []} | kwargs
    circuit = Circuit(
        model=kwargs.pop("model", model), **{k: v for k, v in fields.items() if k != "model"}
    )
    path = setup["root"] / f"{name}.json"
    circuit.save(path)
    return path


def run_validate(
    setup, circuit: Path, out: Path, *extra: str, finetuned: Path | None = None
) -> int:
    return main(
        [
            "validate",
            "--base", str(setup["base"]),
            "--finetuned", str(finetuned or setup["ft"]),
            "--circuit", str(circuit),
            "--data", str(setup["data"]),
            "--out", str(out),
            "--batch-size", "2",
            *extra,
        ]
    )  # fmt: skip


def test_validate_writes_validate_json_with_controls(setup, tmp_path, capsys) -> None:
    circuit = write_circuit(setup, "two", layers=[1, 2])
    assert run_validate(setup, circuit, tmp_path, "--controls", "3", "--seed", "4") == 0
    data = json.loads((tmp_path / "validate.json").read_text())
    for key in ("m_base", "m_ft", "sufficiency", "necessity", "controls", "random_percentile"):
        assert key in data
    assert data["m_ft"] != data["m_base"]
    assert len(data["controls"]) == 3
    layer_sets = {tuple(c["components"]["layers"]) for c in data["controls"]}
    assert len(layer_sets) == 3 and (1, 2) not in layer_sets
    for measure in ("sufficiency", "necessity"):
        lo, hi = data[measure]["ci95"]
        assert lo <= data[measure]["value"] <= hi
        assert 0.0 <= data["random_percentile"][measure]["value"] <= 100.0
    assert len(data["per_doc"]["m_suff"]) == data["n_docs"] == len(DOCS)
    assert len(data["per_doc"]["m_suff_controls"][0]) == 3
    assert data["provenance"]["models"]["finetuned"]["sha256"]
    timing = data["timing"]  # 4-layer model; the circuit starts at layer 1, so block 0 is skipped
    assert timing["layer_forwards"] + timing["layer_forwards_skipped"] == 4 * timing["forwards"]
    assert timing["layer_forwards_skipped"] > 0
    result = ValidateResult.load(tmp_path)
    assert result.to_frame()["set"].tolist() == [
        "circuit",
        "control0",
        "control1",
        "control2",
        "all",
    ]
    assert result.delta["negative"] == (result.delta["value"] < 0)  # the gain's flags
    out = capsys.readouterr().out
    assert "sufficiency" in out and "f(all)" in out and "of m_ft − m_base" in out


def test_the_ceiling_is_one_when_the_fine_tune_changed_only_what_the_nodes_carry(
    setup, tmp_path
) -> None:
    """A layer node is the block's write to the residual stream: patching every layer reproduces
    a fine-tune of q/k/v and MLP weights, and one that also changed W_O and a norm (f(all) = 1
    both ways, to float32 rounding), and the circuit's normalised figures are its raw ones. Head
    nodes leave W_O, the norms and the MLPs with the target model: a head circuit's f(all) is
    not 1, and the normalisation divides by it."""
    circuit = write_circuit(setup, "ceiling", layers=[1, 2])
    outside = save_finetuned(setup["base"], setup["root"] / "llama-ft-outside", outside=True)
    for name, finetuned in (("nodes", setup["ft"]), ("outside", outside)):
        out = tmp_path / name
        assert run_validate(setup, circuit, out, "--controls", "0", finetuned=finetuned) == 0
        result = ValidateResult.load(out)
        for measure in ("sufficiency", "necessity"):
            assert result.ceiling[measure]["value"] == pytest.approx(1.0, abs=1e-5)
            norm = result.normalised[measure]["value"]
            assert norm == pytest.approx(getattr(result, measure)["value"], abs=1e-5)
        assert result.ceiling["none"] == 0.0
        assert result.ceiling["components"] == {"heads": [], "mlps": [], "layers": [0, 1, 2, 3]}
        m_all = np.asarray(result.per_doc["m_suff_all"])
        np.testing.assert_allclose(m_all, result.per_doc["m_ft"], rtol=0, atol=1e-5)
        assert result.to_frame()["set"].tolist() == ["circuit", "all"]

    heads = write_circuit(setup, "ceiling-heads", level="head", heads=[(1, 0), (2, 3)])
    out = tmp_path / "heads"
    assert run_validate(setup, heads, out, "--controls", "0", finetuned=outside) == 0
    result = ValidateResult.load(out)
    assert len(result.ceiling["components"]["heads"]) == 4 * 4
    for measure in ("sufficiency", "necessity"):
        ceiling = result.ceiling[measure]["value"]
        assert abs(ceiling - 1.0) > 1e-3
        expected = getattr(result, measure)["value"] / ceiling
        assert result.normalised[measure]["value"] == pytest.approx(expected, rel=1e-9)


def test_validate_refuses_the_circuits_own_selection_documents(setup, tmp_path, capsys) -> None:
    chosen_on = {
        "role": "ranking",
        "source": "kl",
        "data": {},  # no identity recorded: taken to be the same data set
        "split": "train",  # another name: the ids decide
        "limit": None,
        "ids": ["0", "2", "99"],
    }
    circuit = write_circuit(setup, "selected", layers=[1, 2], documents=[chosen_on])
    assert run_validate(setup, circuit, tmp_path / "refused", "--controls", "0") == 2
    err = capsys.readouterr().err
    assert "2 of the 3 scoring documents selected the circuit" in err
    assert "--allow-overlap" in err and not (tmp_path / "refused").exists()
    other_data = dict(chosen_on, data={"name": "another-data-set", "checksum": "f" * 64})
    elsewhere = write_circuit(setup, "elsewhere", layers=[1, 2], documents=[other_data])
    assert run_validate(setup, elsewhere, tmp_path / "other", "--controls", "0") == 0
    assert ValidateResult.load(tmp_path / "other").documents["overlap"] == 0
    argv = ["--controls", "0", "--allow-overlap"]
    assert run_validate(setup, circuit, tmp_path / "knowingly", *argv) == 0
    documents = ValidateResult.load(tmp_path / "knowingly").documents
    assert (documents["overlap"], documents["allow_overlap"]) == (2, True)


def test_all_layers_recover_everything_and_the_empty_circuit_nothing(setup, tmp_path) -> None:
    every = write_circuit(setup, "every", layers=[0, 1, 2, 3])
    assert run_validate(setup, every, tmp_path / "all", "--controls", "0") == 0
    full = ValidateResult.load(tmp_path / "all")
    assert full.sufficiency["value"] == pytest.approx(1.0, abs=1e-5)
    assert full.necessity["value"] == pytest.approx(1.0, abs=1e-5)
    assert full.random_percentile is None
    empty = write_circuit(setup, "empty", layers=[])
    assert run_validate(setup, empty, tmp_path / "none", "--controls", "0") == 2
    assert not (tmp_path / "none").exists()  # refused: an empty circuit explains nothing


def test_head_circuit_with_zero_ablation(setup, tmp_path) -> None:
    heads = write_circuit(setup, "heads", level="head", heads=[(1, 0), (2, 3)])
    assert run_validate(setup, heads, tmp_path, "--controls", "2", "--ablation", "zero") == 0
    result = ValidateResult.load(tmp_path)
    assert result.ablation == "zero"
    assert all(
        len(c["components"]["heads"]) == 2 and not c["components"]["mlps"] for c in result.controls
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("too_many_controls", "only 5 distinct sets of 2 out of 4"),
        ("out_of_range", "layer 7 is out of range"),
        ("other_model", "the circuit was made for model"),
        ("identical", "nothing to explain"),
        ("other_architecture", "different architectures"),
    ],
)
def test_bad_input_is_one_clear_sentence(setup, tmp_path, capsys, case, message) -> None:
    circuit = write_circuit(setup, "ok", layers=[1, 2])
    finetuned, extra = None, ["--controls", "2"]
    if case == "too_many_controls":
        extra = ["--controls", "6"]
    elif case == "out_of_range":
        circuit = write_circuit(setup, "far", layers=[1, 7])
    elif case == "other_model":
        other = {
            "name": "gpt2-like",
            "sha256": "0" * 64,
            "model_type": "gpt2",
            "layers": 12,
            "heads": 12,
        }
        circuit = write_circuit(setup, "other", layers=[1], model=other)
    elif case == "identical":
        finetuned = setup["base"]
    else:
        finetuned = setup["gpt2"]
    assert run_validate(setup, circuit, tmp_path, *extra, finetuned=finetuned) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# -- scan ---------------------------------------------------------------------------------------


def run_scan(setup, out, level: str) -> int:
    return main(
        [
            "exact",
            "--base", str(setup["base"]),
            "--finetuned", str(setup["ft"]),
            "--data", str(setup["data"]),
            "--level", level,
            "--out", str(out),
        ]
    )  # fmt: skip


def test_layer_scan_csv_contract_plots_and_agreement_with_validate(setup, tmp_path) -> None:
    assert run_scan(setup, tmp_path / "scan", "layer") == 0
    frame = pd.read_csv(tmp_path / "scan" / "exact.csv")
    assert list(frame.columns) == [
        "layer",
        "head",
        "sufficiency",
        "sufficiency_lo",
        "sufficiency_hi",
    ]
    assert frame["layer"].tolist() == [0, 1, 2, 3] and (frame["head"] == -1).all()
    assert (frame["sufficiency_lo"] <= frame["sufficiency"]).all()
    assert (frame["sufficiency"] <= frame["sufficiency_hi"]).all()
    assert (tmp_path / "scan" / "exact.png").stat().st_size > 0
    assert (tmp_path / "scan" / "exact.svg").stat().st_size > 0
    assert ExactResult.load(tmp_path / "scan").to_frame().equals(frame)
    # the scan's layer 2 is the validate sufficiency of the one-layer circuit [2]
    circuit = write_circuit(setup, "layer2", layers=[2])
    assert main(
        [
            "validate", "--base", str(setup["base"]), "--finetuned", str(setup["ft"]),
            "--circuit", str(circuit), "--data", str(setup["data"]), "--controls", "0",
            "--out", str(tmp_path / "v"),
        ]
    ) == 0  # fmt: skip
    expected = ValidateResult.load(tmp_path / "v").sufficiency["value"]
    assert frame.loc[2, "sufficiency"] == pytest.approx(expected, abs=1e-9)


def test_head_scan_has_one_row_per_head(setup, tmp_path) -> None:
    assert run_scan(setup, tmp_path, "head") == 0
    frame = pd.read_csv(tmp_path / "exact.csv")
    assert len(frame) == 4 * 4 and sorted(set(frame["head"])) == [0, 1, 2, 3]
    assert (tmp_path / "exact.png").exists()
    assert torch.isfinite(torch.tensor(frame["sufficiency"].to_numpy())).all()
