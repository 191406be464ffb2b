"""What a study's model and data bound, checked before the first stage (study/preflight.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.shape import ModelShape, model_shape
from sumcircuit.study.arms import distinct_random_sets, random_layers
from sumcircuit.study.config import build_config
from sumcircuit.study.plan import _check_draws
from sumcircuit.study.preflight import check_against_model, check_data

# A 3-layer model with 4 heads per layer and 512 positions, like the bad-input table's.
SMALL = ModelShape("tiny", "llama", n_layers=3, n_heads=4, max_positions=512)
# Passes every check on SMALL: a 1-layer circuit, 2 random controls, sizes 1 and 2.
OK = ["locate.k=1", "validate.controls=2", "faithfulness.sizes=[1,2]"]
OK += ["faithfulness.control_sizes=[2]"]


def _check(*sets: str, shape: ModelShape = SMALL, **overrides) -> None:
    check_against_model(build_config(sets=[*OK, *sets], overrides=overrides), shape)


def test_a_config_within_the_model_passes() -> None:
    _check()
    _check("lora.random_draws=2", "lora.arms=[standard,random,heads]", "lora.heads_per_layer=4")
    _check(max_length=512)


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["faithfulness.sizes=[1,2,4]"], r"^faithfulness\.sizes holds 4, beyond the 3 layers of "
         r"model 'tiny'; use sizes up to 3$"),
        (["faithfulness.level=head", "locate.level=head", "faithfulness.sizes=[13]",
          "faithfulness.control_sizes=[13]"],
         r"holds 13, beyond the 12 heads"),
        (["faithfulness.sizes=[]", "faithfulness.control_sizes=[5]"],
         r"^faithfulness\.control_sizes holds 5, which is not among the curve's sizes 1,2,3"),
        (["locate.k=3"], r"^locate\.k=3 would select every one of the 3 layers of model 'tiny'.*"
         r"use at most 2$"),
        (["validate.controls=3"], r"^validate\.controls=3 asks for more random sets than exist: "
         r"model 'tiny' has 2 sets of 1 of its 3 layers besides the circuit; use at most 2$"),
        (["lora.random_draws=3"], r"^lora\.random_draws=3 asks for more random layer sets than "
         r"exist: a 1-layer circuit leaves 2 distinct sets among the other 2 layers of the "
         r"3-layer model 'tiny'; use at most 2$"),
        (["locate.rule=zscore", "lora.random_draws=3"], r"a circuit of any size leaves at most 2 "
         r"distinct sets"),
        (["lora.arms=[standard,heads]", "lora.heads_per_layer=5"],
         r"^lora\.heads_per_layer=5 exceeds the 4 heads per layer of model 'tiny'"),
    ],
)  # fmt: skip
def test_values_beyond_the_model_are_refused_naming_section_key(sets, words) -> None:
    with pytest.raises(SumcircuitError, match=words):
        _check(*sets)


def test_max_length_beyond_the_positions_is_refused() -> None:
    with pytest.raises(SumcircuitError, match=r"^--max-length=513 exceeds the 512 positions model"):
        _check(max_length=513)
    _check(max_length=100_000, shape=ModelShape("rope", "llama", 3, 4, max_positions=None))


def test_draws_without_a_random_arm_or_heads_without_a_heads_arm_are_not_bounded() -> None:
    _check("lora.arms=[standard,targeted]", "lora.random_draws=50", "lora.heads_per_layer=9")


def test_distinct_random_sets_counts_the_sets_the_random_arm_draws() -> None:
    for n, c in [(3, 1), (4, 2), (6, 2), (5, 3), (30, 3)]:
        others = list(range(c, n))
        k = min(c, len(others))
        expected = math.comb(len(others), k)
        assert distinct_random_sets(n, c) == expected
        if expected <= 20:  # the arm's draws up to that count are each a different set
            draws = [
                tuple(random_layers(others, k, seed=0, draw=d)) for d in range(1, expected + 1)
            ]
            assert len(set(draws)) == expected
    assert distinct_random_sets(3, 3) == 1 and distinct_random_sets(3, 2) == 1


def test_the_late_draw_check_refuses_before_a_duplicate_draw_trains() -> None:
    _check_draws(2, n_layers=3, circuit_size=1)
    with pytest.raises(SumcircuitError, match=r"^lora\.random_draws=3 asks for more random layer "
                       r"sets than exist: the 1-layer circuit leaves 2 distinct sets"):  # fmt: skip
        _check_draws(3, n_layers=3, circuit_size=1)


def test_model_shape_reads_the_config_only(tiny_dirs, tmp_path: Path) -> None:
    shape = model_shape(str(tiny_dirs["gpt2"]))
    assert (shape.model_type, shape.n_layers, shape.n_heads, shape.max_positions) == (
        "gpt2",
        4,
        4,
        512,
    )
    llama = model_shape(str(tiny_dirs["llama"]))
    assert (llama.n_layers, llama.max_positions) == (4, 512) and llama.units("head") == 16
    weightless = tmp_path / "weightless"  # no weights: the config alone answers
    weightless.mkdir()
    (weightless / "config.json").write_text((tiny_dirs["llama"] / "config.json").read_text())
    assert model_shape(str(weightless)).n_layers == 4
    other = json.loads((weightless / "config.json").read_text()) | {"model_type": "bert"}
    (weightless / "config.json").write_text(json.dumps(other))
    with pytest.raises(SumcircuitError, match=r"is a 'bert', which is not supported"):
        model_shape(str(weightless))


def test_check_data_names_the_stage_that_reads_a_missing_split(tmp_path: Path) -> None:
    rows = [{"document": f"d {i}", "summary": "s", "split": "train"} for i in range(4)]
    rows += [{"document": "v", "summary": "s", "split": "validation"}]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SumcircuitError, match=r"^validate\.split and evaluate\.split: dataset "
                       r"'d\.jsonl' has no split 'test'"):  # fmt: skip
        check_data(build_config(overrides={"data": str(data)}))
    with pytest.raises(SumcircuitError, match=r"does not exist"):
        check_data(build_config(overrides={"data": str(tmp_path / "typo.jsonl")}))
