"""`sumcircuit export-peft`: a circuit as a peft LoraConfig that adapts exactly its layers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from peft import LoraConfig, get_peft_model

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.cli import main
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import read_json
from sumcircuit.models.archs import Arch
from sumcircuit.models.tiny import tiny_model
from sumcircuit.training.peft_export import PeftExportConfig, export_peft


def _circuit(arch: str, tmp_path: Path, **picked) -> tuple[Path, Arch]:
    model = tiny_model(arch)
    described = Arch.from_model(model)
    identity = {"name": f"tiny-{arch}", **described.describe()}
    level = "head" if "heads" in picked else "layer"
    circuit = Circuit(model=identity, level=level, rule="manual", score="manual", **picked)
    path = tmp_path / "circuit"
    circuit.save(path)
    return path, described


def _adapted(arch: str, out: Path) -> dict[int, set[str]]:
    """Layer -> names (relative to the block) of the modules that got a lora_A."""
    config = LoraConfig.from_pretrained(str(out))
    peft_model = get_peft_model(tiny_model(arch), config)
    blocks = Arch.from_model(tiny_model(arch)).spec.blocks
    found: dict[int, set[str]] = {}
    for name, _ in peft_model.named_modules():
        match = re.search(rf"{re.escape(blocks)}\.(\d+)\.(.+)\.lora_A$", name)
        if match:
            found.setdefault(int(match.group(1)), set()).add(match.group(2))
    return found


@pytest.mark.parametrize(
    ("arch", "targets", "modules"),
    [
        ("llama", "q,k,v,o", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                              "self_attn.o_proj"}),
        ("gpt2", "q,v,o,mlp", {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}),
    ],
)  # fmt: skip
def test_export_adapts_exactly_the_circuit_layers(
    arch: str, targets: str, modules: set[str], tmp_path: Path, capsys
) -> None:
    circuit, _ = _circuit(arch, tmp_path, layers=[1, 3])
    out = tmp_path / "peft"
    args = ["export-peft", str(circuit), "--out", str(out), "--rank", "4", "--targets", targets]
    assert main(args) == 0
    assert "on layers [1, 3]" in capsys.readouterr().out
    assert _adapted(arch, out) == {1: modules, 3: modules}
    config = LoraConfig.from_pretrained(str(out))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8.0, 0.0)  # alpha = 2*rank
    assert config.base_model_name_or_path == f"tiny-{arch}"
    record = read_json(out / "sumcircuit-export.json")
    assert record["layers"] == [1, 3] and record["provenance"]["models"]["base"]["layers"] == 4


def test_head_circuit_exports_its_layers_and_says_so(tmp_path: Path, capsys) -> None:
    circuit, _ = _circuit("llama", tmp_path, layers=[], heads=[(2, 1), (2, 3), (0, 0)])
    out = tmp_path / "peft"
    assert main(["export-peft", str(circuit / "circuit.json"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cannot restrict an adapter to heads" in printed and "layers [0, 2]" in printed
    assert set(_adapted("llama", out)) == {0, 2}
    config = LoraConfig.from_pretrained(str(out))
    assert (config.r, config.lora_alpha) == (8, 16.0)  # sumcircuit finetune's defaults


def test_bad_inputs_are_one_sentence(tmp_path: Path) -> None:
    circuit, _ = _circuit("llama", tmp_path, layers=[1])
    with pytest.raises(SumcircuitError, match="--rank must be a positive integer"):
        PeftExportConfig(circuit=str(circuit), out=str(tmp_path / "o"), rank=0)
    with pytest.raises(SumcircuitError, match="choose from q,k,v,o,mlp"):
        PeftExportConfig(circuit=str(circuit), out=str(tmp_path / "o"), targets=("attn",))
    bad = Circuit(model={"name": "x"}, level="layer", rule="manual", score="manual", layers=[1])
    bad.save(tmp_path / "bad")
    with pytest.raises(SumcircuitError, match="records model type None"):
        export_peft(PeftExportConfig(circuit=str(tmp_path / "bad"), out=str(tmp_path / "o")))
    far = Circuit(
        model={"name": "x", "model_type": "llama", "layers": 4, "heads": 4},
        level="layer",
        rule="manual",
        score="manual",
        layers=[7],
    )
    far.save(tmp_path / "far")
    with pytest.raises(SumcircuitError, match="out of range"):
        export_peft(PeftExportConfig(circuit=str(tmp_path / "far"), out=str(tmp_path / "o")))
