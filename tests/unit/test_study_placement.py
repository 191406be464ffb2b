"""The study's placement stage: the section and preset, where the stage sits in the plan, and
the checks before a run (an arm that reads the curve needs it, at the circuit's size)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.layout import RunLayout
from sumcircuit.models.shape import ModelShape
from sumcircuit.study.config import build_config
from sumcircuit.study.plan import plan_study
from sumcircuit.study.preflight import check_against_model

SMOLLM2 = ModelShape("smollm2-135m", "llama", n_layers=30, n_heads=9, max_positions=8192)


def test_the_placement_preset_adds_the_curve_and_its_arms() -> None:
    config = build_config(preset="placement")
    section = config.placement
    assert section.enabled and section.sizes == [1, 3, 8] and section.random_sets == 5
    assert (section.limit, section.eval_limit, section.lr) == (48, 32, 1e-3)
    assert {"targeted-adapt", "circuit-rank"} <= set(config.lora.arms)
    # the study sets what the curve reads and avoids: its own stages, the test split
    # (and the adapt stage's locators: tests/unit/test_study_adapt.py)
    circuit = {n: s for n, s in section.sources.items() if s != RunLayout.ADAPT}
    assert section.diff == RunLayout.DIFF
    assert circuit == {"atp": "attribute/atp", "atp-trapezoid": "attribute/atp"}
    assert section.reserved_splits == ["test"] and section.out == RunLayout.PLACEMENT
    for preset in ("quick", "standard", "paper"):
        assert not build_config(preset=preset).placement.enabled


def test_the_stage_runs_before_the_arm_that_reads_it(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    plan = plan_study(build_config(preset="placement"), layout, None)
    names = plan.names
    assert names.index(RunLayout.PLACEMENT) < names.index(RunLayout.lora("targeted-adapt", 0))
    known = set(names)
    stage = {s.name: s for s in plan.stages}
    reads = {RunLayout.DIFF, "attribute/atp", RunLayout.ADAPT}
    assert set(stage[RunLayout.PLACEMENT].inputs(known)) == reads
    arm = stage[RunLayout.lora("targeted-adapt", 0)]
    assert RunLayout.PLACEMENT in arm.inputs(known, {})
    assert RunLayout.PLACEMENT not in stage[RunLayout.lora("circuit-rank", 0)].inputs(known, {})
    assert {"targeted-adapt", "circuit-rank"} <= set(plan.arm_names)
    quick = plan_study(build_config(preset="quick"), layout, None)
    assert RunLayout.PLACEMENT not in quick.names


def test_checks_before_a_run() -> None:
    with pytest.raises(SumcircuitError, match="lora.arms holds targeted-adapt, which reads"):
        build_config(preset="quick", sets=["lora.arms=[standard,targeted-adapt]"])
    with pytest.raises(SumcircuitError, match="placement.eval_split 'test' is reserved"):
        build_config(preset="placement", sets=["placement.eval_split=test"])
    check_against_model(build_config(preset="placement"), SMOLLM2)
    lacking = build_config(preset="placement", sets=["placement.sizes=[1,8]"])
    with pytest.raises(SumcircuitError, match=r"placement.sizes \[1, 8\] lacks 3, the circuit's"):
        check_against_model(lacking, SMOLLM2)
    beyond = build_config(preset="placement", sets=["placement.sizes=[3,30]"])
    with pytest.raises(SumcircuitError, match="placement.sizes holds 30; the model has 30 layers"):
        check_against_model(beyond, SMOLLM2)
    many = build_config(
        preset="placement", sets=["placement.random_sets=31", "placement.sizes=[1,3]"]
    )
    with pytest.raises(SumcircuitError, match="placement.random_sets=31 asks for more random sets"):
        check_against_model(many, SMOLLM2)
