"""Study config: presets, YAML, overrides and the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.study.config import build_config, parse_override


def test_precedence_flags_over_set_over_yaml_over_preset(tmp_path: Path) -> None:
    yaml_file = tmp_path / "study.yaml"
    yaml_file.write_text("preset: quick\nmax_length: 300\nlora:\n  epochs: 2\n  rank: 4\n")
    config = build_config(
        config_file=yaml_file, sets=["lora.rank=16"], overrides={"max_length": 320}
    )
    assert config.preset == "quick"
    assert config.max_length == 320  # flag beats YAML
    assert config.lora["rank"] == 16  # --set beats YAML
    assert config.lora["epochs"] == 2  # YAML beats preset
    assert config.diff["limit"] == 32  # preset beats default (100)
    assert config.lora["arms"] == ["standard", "targeted", "random"]


def test_paper_preset_runs_every_arm_with_three_seeds() -> None:
    config = build_config(preset="paper")
    assert config.seeds == [0, 1, 2]
    assert set(config.lora["arms"]) == {
        "standard",
        "targeted",
        "random",
        "anti",
        "targeted-equal-budget",
        "heads",
    }


def test_unknown_preset_and_keys_list_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(SumcircuitError, match="unknown preset 'fast'; valid: quick, paper"):
        build_config(preset="fast")
    with pytest.raises(
        SumcircuitError, match=r"unknown key\(s\) \['epoch'\] in section 'lora'; valid: .*epochs"
    ):
        build_config(sets=["lora.epoch=2"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("modell: x\n")
    with pytest.raises(SumcircuitError, match=r"unknown key\(s\) \['modell'\].*valid: .*model"):
        build_config(config_file=bad)
    with pytest.raises(SumcircuitError, match="unknown LoRA arm"):
        build_config(sets=["lora.arms=[standard, magic]"])
    with pytest.raises(SumcircuitError, match="must include 'standard'"):
        build_config(sets=["lora.arms=[targeted]"])


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("model: smollm2-135m\nlora:\n  epochs: [1\n  rank: 4\n")
    with pytest.raises(SumcircuitError, match="not valid YAML at line 4"):
        build_config(config_file=bad)


def test_parse_override() -> None:
    assert parse_override("lora.epochs=3") == {"lora": {"epochs": 3}}
    assert parse_override("seeds=[1, 2]") == {"seeds": [1, 2]}
    with pytest.raises(SumcircuitError, match="section.key=value"):
        parse_override("lora.epochs")
