"""The study's adapt stage: the section (on with the placement curve, its LoRA options the
curve's), where it sits in the plan, that the curve (and only the curve) draws its locators, the
checks before a run, and that targeted-adapt may take an adaptation locator's layers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sumcircuit.analysis.adapt.result import PARTS
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.placement.result import PlacementResult
from sumcircuit.errors import SumcircuitError
from sumcircuit.layout import RunLayout
from sumcircuit.study.arms import ARMS, ArmContext
from sumcircuit.study.config import build_config
from sumcircuit.study.plan import plan_study
from sumcircuit.study.preflight import check_data

ADAPT_LOCATORS = {name for scores in PARTS.values() for name in scores}


def test_the_section_follows_the_placement_curve() -> None:
    placement = build_config(preset="placement")
    section = placement.adapt
    assert section.enabled and section.split == "train" and section.model == placement.model
    assert (section.limit, section.batch_size, section.probe_steps) == (32, 4, 8)
    assert section.parts == list(PARTS) and section.probe_pairs == 32
    # the LoRA options of the runs the curve trains
    curve = placement.placement
    assert (section.rank, section.alpha, section.targets, section.lr) == (
        curve.rank,
        curve.alpha,
        curve.targets,
        curve.lr,
    )
    for preset in ("quick", "standard", "paper"):
        assert not build_config(preset=preset).adapt.enabled
    # explicit either way
    assert build_config(preset="quick", sets=["adapt.enabled=true"]).adapt.enabled
    assert not build_config(preset="placement", sets=["adapt.enabled=false"]).adapt.enabled
    # a rank given alone keeps alpha = 2 x rank; the curve's own rank carries its alpha
    own = build_config(preset="placement", sets=["adapt.rank=4", "placement.lr=5e-4"]).adapt
    assert (own.rank, own.alpha, own.lr) == (4, 8.0, 5e-4)
    both = build_config(preset="placement", sets=["placement.rank=16", "placement.alpha=8"])
    assert (both.adapt.rank, both.adapt.alpha) == (16, 8.0)


def test_the_study_fixes_model_data_and_the_train_split() -> None:
    for key in ("split=validation", "model=x", "data=x", "seed=3"):
        with pytest.raises(
            SumcircuitError, match=r"unknown key\(s\) \['(split|model|data|seed)'\]"
        ):
            build_config(preset="placement", sets=[f"adapt.{key}"])
    with pytest.raises(SumcircuitError, match="adapt.parts probe,probe is invalid"):
        build_config(preset="placement", sets=["adapt.parts=[probe,probe]"])
    round_trip = build_config(preset="placement").to_dict()
    assert round_trip["adapt"]["enabled"] is True and "split" not in round_trip["adapt"]


def test_only_the_curve_draws_the_adaptation_locators() -> None:
    config = build_config(preset="placement")
    adapting = {n: s for n, s in config.placement.sources.items() if n in ADAPT_LOCATORS}
    assert adapting == {name: RunLayout.ADAPT for name in ADAPT_LOCATORS}
    assert ADAPT_LOCATORS <= set(config.placement.wanted())
    # faithfulness and locate draw circuit locators only (an adaptation one only when named)
    for section in (config.faithfulness, config.locate):
        assert not set(section.sources) & ADAPT_LOCATORS and section.sources
    # the chosen parts give their locators, and no other
    some = build_config(preset="placement", sets=["adapt.parts=[gradients,spectrum]"])
    given = set(some.placement.sources) & ADAPT_LOCATORS
    assert given == {"rgn", "fisher", "grad-energy", "spectrum-snr"}
    off = build_config(preset="placement", sets=["adapt.enabled=false"])
    assert not set(off.placement.sources) & ADAPT_LOCATORS


def test_the_stage_reads_nothing_and_runs_before_the_curve(tmp_path: Path) -> None:
    plan = plan_study(build_config(preset="placement"), RunLayout(tmp_path), None)
    names, known = plan.names, set(plan.names)
    stage = {s.name: s for s in plan.stages}
    assert stage[RunLayout.ADAPT].inputs(known) == ()
    assert RunLayout.ADAPT in stage[RunLayout.PLACEMENT].inputs(known)
    assert names.index(RunLayout.ADAPT) < names.index(RunLayout.PLACEMENT)
    for preset in ("quick", "standard"):
        assert (
            RunLayout.ADAPT
            not in plan_study(build_config(preset=preset), RunLayout(tmp_path), None).names
        )
    alone = plan_study(
        build_config(preset="quick", sets=["adapt.enabled=true"]), RunLayout(tmp_path), None
    )
    assert RunLayout.ADAPT in alone.names and RunLayout.PLACEMENT not in alone.names


def test_a_curve_locator_needs_its_stage() -> None:
    with pytest.raises(
        SumcircuitError, match="placement.locators names rgn, whose scores no stage"
    ):
        build_config(
            preset="placement", sets=["adapt.enabled=false", "placement.locators=[kl,rgn]"]
        )
    with pytest.raises(SumcircuitError, match="adapt.parts holding probe, or drop it"):
        build_config(
            preset="placement",
            sets=["adapt.parts=[gradients]", "placement.locators=[rgn,probe-act]"],
        )
    with pytest.raises(SumcircuitError, match="names exact, .*set exact.limit above 0"):
        build_config(preset="placement", sets=["placement.locators=[exact]"])
    build_config(preset="placement", sets=["placement.locators=[kl,atp,rgn,probe-act,first-k]"])


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """60 pairs: 50 in the train split (split by hashed id)."""
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"id": f"d{i}", "document": f"text {i} " * 20, "summary": f"sum {i}."} for i in range(60)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_train_split_must_hold_the_pairs_adapt_reads(pairs: Path) -> None:
    def config(*sets: str):
        return build_config(preset="placement", overrides={"data": str(pairs)}, sets=list(sets))

    check_data(config())  # 32 pairs of 50, for both parts
    check_data(config("adapt.limit=50", "adapt.probe_steps=12"))
    with pytest.raises(SumcircuitError, match="adapt.limit=51 exceeds the 50 pairs of the train"):
        check_data(config("adapt.limit=51"))
    with pytest.raises(SumcircuitError, match="adapt.probe_steps=13 steps .* use at most 12 steps"):
        check_data(config("adapt.probe_steps=13"))
    # a part that does not run reads nothing; a stage that does not run is not checked
    check_data(config("adapt.limit=51", "adapt.parts=[probe,spectrum]"))
    check_data(config("adapt.probe_steps=13", "adapt.enabled=false"))


def _row(locator: str, layers: list[int], gap: float) -> dict:
    return {"view": "same-rank", "locator": locator, "k": 2, "layers": layers, "gap_closed": gap}


def test_targeted_adapt_takes_an_adaptation_locator_that_closed_the_most_gap() -> None:
    rows = [
        _row("kl", [0, 1], 0.1),
        _row("grad-energy", [2, 3], 0.6),
        _row("probe-act", [1, 3], 0.4),
        _row("atp", [0, 3], math.nan),  # no gap measured: never chosen
    ]
    curve = PlacementResult(
        model={}, n_layers=4, sizes=[2], rank=8, runs={}, per_doc={}, rows=rows, random=[],
        documents={"outcome": {"ids": []}},
    )  # fmt: skip
    circuit = Circuit(model={}, level="layer", rule="topk", score="kl", layers=[0, 1])
    context = ArmContext(circuit, circuit, ranked=[0, 1, 2, 3], n_layers=4, placement=curve)
    assert ARMS["targeted-adapt"].adapts(context) == {"layers": [2, 3]}
