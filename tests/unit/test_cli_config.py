"""CLI flags come from the config dataclasses: one flag per field, with the dataclass default."""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field, fields

import pytest

from sumcircuit.analysis.causal.exact import ExactConfig
from sumcircuit.analysis.causal.patching import PairConfig
from sumcircuit.analysis.causal.validate import ValidateConfig
from sumcircuit.analysis.diff.run import DiffConfig
from sumcircuit.analysis.locate.rules import LocateConfig
from sumcircuit.analysis.placement.config import PlacementConfig
from sumcircuit.cli import build_parser
from sumcircuit.cli_config import ConfigFlags, flag_name
from sumcircuit.configs import DictConfig, field_default
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.evaluation.evaluate import EvaluateConfig
from sumcircuit.study.config import LoraStudyConfig, StudyConfig
from sumcircuit.training.config import FinetuneConfig

# command, its config, the required flags, the fields they set
COMMANDS = [
    ("finetune", FinetuneConfig, ["--out", "o"], {"out": "o"}),
    ("diff", DiffConfig, ["--finetuned", "ft", "--out", "o"], {"finetuned": "ft"}),
    ("evaluate", EvaluateConfig, ["--out", "o"], {"out": "o"}),
    ("locate", LocateConfig, ["--diff", "d", "--out", "o"], {"diff": "d"}),
    (
        "validate",
        ValidateConfig,
        ["--finetuned", "ft", "--circuit", "c.json", "--out", "o"],
        {"finetuned": "ft", "circuit": "c.json"},
    ),
    ("exact", ExactConfig, ["--finetuned", "ft", "--out", "o"], {"finetuned": "ft"}),
    ("placement", PlacementConfig, ["--out", "o"], {"out": "o"}),
]


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]


@pytest.mark.parametrize(("command", "cls", "required", "given"), COMMANDS)
def test_every_field_has_a_flag_with_the_dataclass_default(command, cls, required, given):
    parser = build_parser()
    sub = _subparser(parser, command)
    args = parser.parse_args([command, *required])
    for f in fields(cls):
        assert flag_name(f.name) in sub._option_string_actions, f.name
        if f.name not in given:
            assert getattr(args, f.name) == field_default(f), f.name
    module = importlib.import_module(f"sumcircuit.commands.{command}")
    assert module.FLAGS.build(args) == cls(**given)  # the flags build the dataclass's config


@pytest.mark.parametrize(
    "cls",
    [
        FinetuneConfig,
        DiffConfig,
        PairConfig,
        ValidateConfig,
        ExactConfig,
        LocateConfig,
        EvaluateConfig,
        LoraStudyConfig,
        StudyConfig,
    ],
)
def test_every_config_field_has_help(cls) -> None:
    assert [f.name for f in fields(cls) if not f.metadata.get("help")] == []


def test_flags_parse_lists_pairs_and_booleans() -> None:
    parser = build_parser()
    argv = ["finetune", "--out", "o", "--heads", "3.4,2.1", "--targets", "q,v"]
    args = parser.parse_args([*argv, "--no-progress", "--lr", "1e-3", "--equal-budget"])
    config = importlib.import_module("sumcircuit.commands.finetune").config_from_args(args)
    assert config.heads == [(2, 1), (3, 4)] and config.targets == ("q", "v")
    assert config.progress is False and config.lr == 1e-3 and config.equal_budget is True
    args = parser.parse_args(["evaluate", "--out", "o", "--no-stop-at-newline"])
    assert args.stop_at_newline is False


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["finetune", "--out", "o", "--epochs", "abc"], "--epochs: expected an integer, got 'abc'"),
        (["finetune", "--out", "o", "--layers", "2,x"], "--layers: expected a comma-separated"),
        (["finetune", "--out", "o", "--heads", "2-1"], "--heads: expected a comma-separated list"),
        (["locate", "--diff", "d", "--out", "o", "--rule", "best"], "invalid choice: 'best'"),
    ],
)
def test_a_bad_flag_is_a_usage_error(argv, words, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2 and words in capsys.readouterr().err


def test_a_bad_value_names_the_flag() -> None:
    parser = build_parser()
    args = parser.parse_args(["evaluate", "--out", "o", "--num-beams", "0"])
    module = importlib.import_module("sumcircuit.commands.evaluate")
    with pytest.raises(ConfigError, match="^--num-beams must be at least 1, got 0$"):
        module.FLAGS.build(args)


@dataclass
class _Toy(DictConfig):
    name: str = field(metadata={"help": "a name"})
    steps: int = field(default=3, metadata={"help": "how many"})
    hidden: int = field(default=0, metadata={"help": "set by the command"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1:
            raise ConfigError("steps", "{key} must be at least 1")


def test_skip_rename_and_fixed_values() -> None:
    flags = ConfigFlags(_Toy, skip=("hidden",), rename={"steps": "n_steps"})
    parser = argparse.ArgumentParser()
    flags.add_to(parser)
    assert "--hidden" not in parser._option_string_actions
    args = parser.parse_args(["--name", "x", "--steps", "5"])  # the old name stays an alias
    assert flags.build(args, hidden=7) == _Toy(name="x", steps=5, hidden=7)
    assert parser.parse_args(["--name", "x", "--n-steps", "2"]).steps == 2
    with pytest.raises(SumcircuitError, match="^--n-steps must be at least 1$"):
        flags.build(parser.parse_args(["--name", "x", "--n-steps", "0"]))
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --name has no default: required
