"""Study config: presets, YAML, overrides and the errors a user sees."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from sumcircuit.cli import main
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.evaluate import EvaluateConfig
from sumcircuit.study.config import build_config, parse_override


def test_precedence_flags_over_set_over_yaml_over_preset(tmp_path: Path) -> None:
    yaml_file = tmp_path / "study.yaml"
    yaml_file.write_text("preset: quick\nmax_length: 300\nlora:\n  epochs: 2\n  rank: 4\n")
    config = build_config(
        config_file=yaml_file, sets=["lora.rank=16"], overrides={"max_length": 320}
    )
    assert config.preset == "quick"
    assert config.max_length == 320  # flag beats YAML
    assert config.lora.rank == 16  # --set beats YAML
    assert config.lora.epochs == 2  # YAML beats preset
    assert config.diff.limit == 32  # preset beats the study default (64)
    assert config.lora.arms == ["standard", "targeted", "random"]


def test_paper_preset_runs_every_arm_with_three_seeds() -> None:
    config = build_config(preset="paper")
    assert config.seeds == [0, 1, 2]
    assert set(config.lora.arms) == {
        "standard",
        "targeted",
        "targeted-kl",
        "random",
        "anti",
        "targeted-equal-budget",
        "heads",
    }


def test_unknown_preset_and_keys_list_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(
        SumcircuitError, match="unknown preset 'fast'; valid: quick, standard, paper"
    ):
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


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"sets": ["lora.epochs=abc"]}, r"^lora\.epochs must be an integer, got 'abc'$"),
        ({"sets": ["evaluate.num_beams=0"]}, r"^evaluate\.num_beams must be at least 1, got 0$"),
        ({"sets": ["finetune.lora_dropout=1.5"]}, r"^finetune\.lora_dropout must lie in \[0, 1\)"),
        ({"sets": ["diff.region=middle"]}, r"^unknown diff\.region 'middle'; choose from"),
        ({"sets": ["validate.ablation=drop"]}, r"^unknown validate\.ablation 'drop'"),
        ({"sets": ["locate.k=two"]}, r"^locate\.k must be an integer, got 'two'$"),
        ({"overrides": {"seeds": "a,b"}}, r"^seeds must be a comma-separated list of integers"),
        ({"sets": ["max_length=abc"]}, r"^max_length must be an integer, got 'abc'$"),
    ],
)
def test_a_bad_value_in_any_section_fails_in_build_config_naming_section_key(kwargs, words):
    with pytest.raises(SumcircuitError, match=words):
        build_config(**kwargs)


def test_values_from_the_command_line_are_typed_and_defaults_come_from_the_stage_configs():
    config = build_config(overrides={"seeds": "0,2"}, sets=["lora.lr=1e-4", "lora.targets=q,v"])
    assert config.seeds == [0, 2]
    assert config.lora.lr == 1e-4 and config.lora.targets == ("q", "v")  # YAML reads 1e-4 as text
    assert config.evaluate.max_new_tokens == EvaluateConfig().max_new_tokens
    assert config.validate.batch_size == 8 and config.finetune.lr == 3e-5  # method full
    assert config.diff.finetuned == "finetune"  # run-relative, set by the study


def test_print_config_output_is_the_resolved_config_and_reads_back(tmp_path: Path) -> None:
    config = build_config(preset="quick", sets=["lora.rank=4"])
    data = config.to_dict()
    assert data["lora"]["alpha"] == 8.0 and data["evaluate"]["num_beams"] == 1
    assert "finetuned" not in data["diff"]  # managed by the study, not an option
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(data))
    assert build_config(config_file=again) == config


def test_print_config_refuses_a_bad_value(capsys) -> None:
    assert main(["run", "--out", "x", "--print-config", "--set", "lora.epochs=abc"]) == 2
    assert capsys.readouterr().err == "error: lora.epochs must be an integer, got 'abc'\n"
    assert main(["run", "--out", "x", "--print-config", "--seeds", "a,b"]) == 2
    assert "seeds must be" in capsys.readouterr().err


def test_exact_section_is_off_by_default_and_reads_the_first_selection_documents() -> None:
    quick = build_config(preset="quick")
    assert quick.exact.limit == 0 and not quick.exact.enabled
    assert "exact" not in quick.faithfulness.sources
    config = build_config(preset="quick", sets=["exact.limit=2", "diff.split=test"])
    assert (config.exact.limit, config.exact.split, config.exact.level) == (2, "test", "layer")
    assert config.faithfulness.sources["exact"] == "exact"  # run-relative: the exact locator
    assert config.to_dict()["exact"]["limit"] == 2 and "split" not in config.to_dict()["exact"]
    with pytest.raises(SumcircuitError, match=r"^exact\.limit=40 exceeds diff\.limit=32"):
        build_config(preset="quick", sets=["exact.limit=40"])
    with pytest.raises(SumcircuitError, match=r"^exact\.limit must be at least 0, got -1$"):
        build_config(sets=["exact.limit=-1"])
    with pytest.raises(SumcircuitError, match=r"needs faithfulness\.level=layer"):
        build_config(sets=["exact.limit=2", "faithfulness.level=head"])
    with pytest.raises(SumcircuitError, match=r"unknown key\(s\) \['level'\] in section 'exact'"):
        build_config(sets=["exact.level=head"])


def test_the_old_scan_section_is_read_as_exact_with_a_warning(caplog) -> None:
    config = build_config(preset="quick", sets=["scan.limit=2"])
    assert config.exact.limit == 2
    assert "section 'scan' is now 'exact'" in caplog.text


def test_standard_preset_is_sized_to_decide() -> None:
    """The standard preset's sizes keep their documented reasons: every test document, every
    training pair, >= 3 random draws, and selection documents disjoint from scoring ones."""
    config = build_config(preset="standard")
    assert config.evaluate.limit is None and config.finetune.limit is None
    assert config.lora.random_draws >= 3 and "targeted-kl" in config.lora.arms
    assert config.faithfulness.split == config.diff.split
    assert config.faithfulness.limit > config.diff.limit  # documents left to score on
    assert 0 < config.exact.limit <= config.diff.limit
    assert config.validate.split == "test"  # not the validation documents that chose the circuit


def test_attribute_methods_are_one_stage_and_one_locator_each() -> None:
    for preset in ("quick", "standard"):  # their time budgets
        assert build_config(preset=preset).attribute.methods == ["atp"]
    both = ["attribute.methods=[atp,ig-weights]", "attribute.ig_steps=8"]
    config = build_config(preset="standard", sets=both)
    assert config.attribute.methods == ["atp", "ig-weights"]
    assert config.attribute.folders == ["attribute/atp", "attribute/ig-weights"]
    planned = {"atp": "attribute/atp", "ig-weights": "attribute/ig-weights", "exact": "exact"}
    planned["atp-trapezoid"] = "attribute/atp"  # free from atp's passes: its own locator
    assert config.faithfulness.sources == config.locate.sources == planned
    assert config.faithfulness.exclude_selection  # scores on the validation documents after
    old = build_config(preset="quick", sets=["attribute.methods=[atp,ig-activations]"])
    assert old.attribute.methods == ["atp", "ig-direct"]  # the old name, renamed
    atp, ig = (config.attribute.stage(m) for m in config.attribute.methods)
    assert (atp.method, ig.method, ig.ig_steps) == ("atp", "ig-weights", 8)
    assert "methods" not in atp.to_dict()  # adding a method does not re-run the others
    atp_only = build_config(preset="standard", sets=["attribute.methods=[atp]"]).attribute
    assert atp.to_dict() == atp_only.stage("atp").to_dict()
    one = build_config(sets=["attribute.methods=[ig-weights]"])
    assert one.attribute.method == "ig-weights"
    assert one.locate.sources == {"ig-weights": "attribute/ig-weights"}
    with pytest.raises(SumcircuitError, match=r"^attribute\.methods must list distinct methods"):
        build_config(sets=["attribute.methods=[atp,atp]"])
    with pytest.raises(SumcircuitError, match=r"^attribute\.methods must list distinct methods"):
        build_config(sets=["attribute.methods=[eap]"])
    with pytest.raises(SumcircuitError, match=r"unknown key\(s\) \['method'\] in section"):
        build_config(sets=["attribute.method=atp"])


# -- bounds, strict YAML, the default preset (issue 25) ---------------------------------------
@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["lora.epochs=1.0e+29"], r"^lora\.epochs must be at most 100, got 1e\+29: "),
        (["finetune.epochs=101"], r"^finetune\.epochs must be at most 100, got 101: "),
        (["diff.n_boot=1000000000000"], r"^diff\.n_boot must be at most 100,000, got 1e\+12: "),
        (["evaluate.n_boot=100001"], r"^evaluate\.n_boot must be at most 100,000"),
        (["faithfulness.controls=1001"], r"^faithfulness\.controls must be at most 1,000"),
        (["attribute.ig_steps=257"], r"^attribute\.ig_steps must be at most 256"),
        (["lora.random_draws=101"], r"^lora\.random_draws must be at most 100, got 101: "),
        (["evaluate.num_beams=65"], r"^evaluate\.num_beams must be at most 64"),
        (["finetune.batch_size=5000"], r"^finetune\.batch_size must be at most 4,096"),
        (["lora.seed=4294967296"], r"unknown key\(s\) \['seed'\]"),  # managed: top-level seeds
        (["faithfulness.sizes=[0]"], r"^faithfulness\.sizes must be at least 1, got 0$"),
        (["faithfulness.sizes=[1,0]"], r"^faithfulness\.sizes must be at least 1, got 1,0$"),
        (["faithfulness.control_sizes=[-1]"], r"^faithfulness\.control_sizes must be at least 1"),
        (["seeds=[0,0]"], r"^seeds names 0 more than once"),
        (["seeds=[-1]"], r"^seeds must be at least 0, got -1$"),
        (["seeds=[4294967296]"], r"^seeds must be at most 4,294,967,295, got 4294967296: "),
        (["seeds=[" + ",".join(map(str, range(21))) + "]"], r"^seeds lists 21 seeds, more than 20"),
        (
            ["faithfulness.sizes=[1,2]", "faithfulness.control_sizes=[3]"],
            r"^faithfulness\.control_sizes holds 3, which is not among faithfulness\.sizes \[1, 2\]",
        ),
        (["locate.level=head"], r"^locate\.level=head differs from faithfulness\.level=layer"),
    ],
)
def test_values_beyond_their_bounds_are_refused_naming_section_key(sets, words) -> None:
    with pytest.raises(SumcircuitError, match=words):
        build_config(sets=sets)


def test_values_at_their_bounds_are_accepted() -> None:
    sets = [
        "lora.epochs=100",
        "diff.n_boot=100000",
        "lora.random_draws=100",
        "seeds=[0,4294967295]",
    ]
    config = build_config(
        sets=[*sets, "faithfulness.sizes=[1,2]", "faithfulness.control_sizes=[2]"]
    )
    assert (config.lora.epochs, config.diff.n_boot, config.lora.random_draws) == (100, 100000, 100)
    assert config.seeds == [0, 2**32 - 1] and config.faithfulness.control_sizes == [2]
    level = build_config(sets=["locate.level=head", "faithfulness.level=head"])
    assert level.locate.level == level.faithfulness.level == "head"


def test_duplicate_yaml_keys_are_refused_naming_the_line(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("model: smollm2-135m\nlora:\n  epochs: 1\n  rank: 4\n  epochs: 2\n")
    with pytest.raises(SumcircuitError, match=r"at line 5, column 3: key 'epochs' appears more"):
        build_config(config_file=dup)
    top = tmp_path / "top.yaml"
    top.write_text("lora: {epochs: 1}\nlora: {rank: 4}\n")
    with pytest.raises(SumcircuitError, match=r"at line 2, column 1: key 'lora' appears more"):
        build_config(config_file=top)
    with pytest.raises(SumcircuitError, match=r"--set 'lora\.arms=\{a: 1, a: 2\}'.*key 'a'"):
        parse_override("lora.arms={a: 1, a: 2}")
    merged = tmp_path / "merged.yaml"  # a merge key's values may be overridden: no duplicate
    merged.write_text("lora: &l {epochs: 1, rank: 4}\nfinetune:\n  <<: *l\n  rank: 8\n")
    config = build_config(config_file=merged)
    assert (config.finetune.epochs, config.finetune.rank, config.lora.rank) == (1, 8, 4)


def test_an_alias_bomb_is_refused_in_a_second(tmp_path: Path) -> None:
    """Nine levels of nine aliases: 9^9 = 387 million strings once expanded."""
    levels = ["  - &a0 [" + ", ".join(["standard"] * 9) + "]"]
    levels += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("lora:\n arms:\n" + "\n".join(levels) + "\n")
    start = time.perf_counter()
    with pytest.raises(SumcircuitError, match="its aliases expand to more than 100,000 values"):
        build_config(config_file=bomb)
    assert time.perf_counter() - start < 5
    many = tmp_path / "many.yaml"
    many.write_text("x: &x 1\nseeds: [" + ", ".join(["*x"] * 101) + "]\n")
    with pytest.raises(SumcircuitError, match=r"line 2, column 409: it uses more than 100 aliases"):
        build_config(config_file=many)
    few = tmp_path / "few.yaml"  # aliases a config may use: a few, expanding to little
    few.write_text("x: &k 2\nlocate: {k: *k}\n")
    with pytest.raises(SumcircuitError, match=r"unknown key\(s\) \['x'\]"):
        build_config(config_file=few)  # read fine; refused for its key, not its alias
    few.write_text("locate: &loc {k: 2}\nvalidate: {limit: 3}\n")
    assert build_config(config_file=few).locate.k == 2


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", r"is not UTF-8 text \(byte 1 is not\)"),
        (b"lora: \x00\x01\n", r"is not valid YAML: it holds a byte or character that YAML"),
        (b"lora: " + b"[" * 5000 + b"]" * 5000, "is nested too deeply to be a study config"),
        (b"x" * (1 << 20) + b"x", "is over 1 MiB; a study config is a short YAML file"),
    ],
)
def test_a_config_that_is_no_yaml_text_is_one_sentence(tmp_path: Path, content, words) -> None:
    path = tmp_path / "study.yaml"
    path.write_bytes(content)
    with pytest.raises(SumcircuitError, match=words) as info:
        build_config(config_file=path)
    assert "\n" not in str(info.value)
    with pytest.raises(SumcircuitError, match="is not a file"):
        build_config(config_file=tmp_path)


def test_run_without_a_preset_runs_the_quick_preset(tmp_path: Path, capsys) -> None:
    assert main(["run", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    quick = build_config(preset="quick").to_dict()
    assert printed == quick and printed["preset"] == "quick"
    assert printed["faithfulness"]["limit"] == 36  # not every remaining validation document
    named = tmp_path / "named.yaml"  # a preset named in the YAML wins over the default
    named.write_text("preset: standard\n")
    assert main(["run", "--print-config", "--config", str(named)]) == 0
    assert json.loads(capsys.readouterr().out)["preset"] == "standard"
    plain = tmp_path / "plain.yaml"
    plain.write_text("lora: {epochs: 2}\n")
    assert main(["run", "--print-config", "--config", str(plain)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["preset"] == "quick" and printed["lora"]["epochs"] == 2
    assert main(["run", "--print-config", "--preset", "standard"]) == 0
    assert json.loads(capsys.readouterr().out)["preset"] == "standard"
    assert build_config().preset is None  # the Python API keeps the stage defaults
    from sumcircuit.cli import build_parser

    run_help = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "without --preset (or a preset in --config) the quick preset's sizes run" in " ".join(
        run_help.split()
    )
