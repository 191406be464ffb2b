"""Learning-curve points: where they fall, steps to a target score, old records, plots."""

from __future__ import annotations

import json

import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.trained import TrainingResult, final_value, steps_to_target
from sumcircuit.report.lora_plots import learning_curves
from sumcircuit.study.claims import lora_claim
from sumcircuit.training.curve import curve_point, curve_steps


def _curve(*values, key="val_rougeL", every=3):
    """Points at steps 0, every, 2·every, ... with ``key`` set (ROUGE-L None at step 0)."""
    return [
        {"step": i * every, "epoch": i / 4, "examples_seen": 4 * i * every, key: v}
        for i, v in enumerate(values)
    ]


@pytest.mark.parametrize(
    ("total", "n", "steps"),
    [
        (12, 4, {3, 6, 9, 12}),
        (10, 4, {3, 5, 8, 10}),  # ceil(2.5), 5, ceil(7.5), 10
        (2, 4, {1, 2}),  # fewer steps than points: one point per step
        (12, 1, {12}),
        (12, 0, set()),
    ],
)
def test_points_are_evenly_spaced_and_end_on_the_last_step(total, n, steps):
    assert curve_steps(total, n) == steps


def test_a_point_records_the_fraction_of_epochs_trained():
    assert curve_point(6, 4, 24, 1.5, None) == {
        "step": 6,
        "epoch": 1.5,
        "examples_seen": 24,
        "val_loss": 1.5,
        "val_rougeL": None,
    }


def test_steps_to_target_uses_the_seed_mean():
    seeds = [_curve(None, 0.10, 0.20, 0.30, 0.32), _curve(None, 0.14, 0.18, 0.26, 0.30)]
    # seed means: step 3 0.12, step 6 0.19, step 9 0.28, step 12 0.31
    assert steps_to_target(seeds, 0.19) == 6  # reaching counts (>=)
    assert steps_to_target(seeds, 0.2) == 9
    assert steps_to_target(seeds, 0.12) == 3  # step 0 has no ROUGE-L: never counts
    assert steps_to_target(seeds, 0.4) is None
    assert final_value(seeds) == pytest.approx(0.31)


def test_steps_to_target_lower_is_better_for_the_loss():
    seeds = [_curve(3.0, 2.5, 2.0, 1.8, key="val_loss"), _curve(3.0, 2.3, 2.2, 1.6, key="val_loss")]
    # means: 3.0, 2.4, 2.1, 1.7
    assert steps_to_target(seeds, 2.1, key="val_loss", higher_is_better=False) == 6
    assert steps_to_target(seeds, 3.0, key="val_loss", higher_is_better=False) == 0
    assert steps_to_target(seeds, 1.0, key="val_loss", higher_is_better=False) is None
    assert final_value(seeds, "val_loss") == pytest.approx(1.7)


def test_only_steps_every_seed_measured_count():
    full, short = _curve(None, 0.5, 0.6), _curve(None, 0.1)  # short stopped after step 3
    assert steps_to_target([full, short], 0.35) is None  # 3: mean 0.3; 6: one seed only
    assert steps_to_target([full], 0.55) == 6
    assert final_value([full, short]) == pytest.approx(0.35)
    assert final_value([[], _curve(1.0, key="val_loss")]) is None  # no ROUGE-L anywhere
    assert steps_to_target([], 0.1) is None


def test_a_record_without_a_curve_still_loads_and_a_bad_point_is_named(tmp_path):
    old = {
        "trainable_params": 1,
        "total_params": 2,
        "epochs": [
            {"epoch": 0, "train_loss": 2.0, "val_loss": 1.9, "wall_s": 1.0, "tokens_per_s": 10.0}
        ],
        "wall_s": 1.0,
        "config": {},
        "config_hash": "h",
        "provenance": {},
    }
    (tmp_path / "training.json").write_text(json.dumps(old))
    assert TrainingResult.load(tmp_path).curve == []
    bad = old | {
        "curve": [{"step": 0, "epoch": 0.0, "examples_seen": 0, "val_loss": 1.0, "loss": 2.0}]
    }
    with pytest.raises(SumcircuitError, match=r"unknown key\(s\) \['loss'\] in a curve point"):
        TrainingResult.from_dict(bad)


def test_learning_curves_plot_steps_or_fall_back_to_epochs(tmp_path):
    new = {"curve": _curve(2.0, 1.8, key="val_loss"), "epochs": []}
    assert learning_curves({"standard": new}, tmp_path / "a").exists()
    old = {"epochs": [{"epoch": 0, "val_loss": 2.0, "val_rougeL": 0.1}]}
    assert learning_curves({"standard": new, "old": old}, tmp_path / "b").exists()


def test_the_lora_claim_names_the_step_or_never():
    lora = {
        "standard": {"rougeL": 0.2, "trainable_params": 100},
        "targeted": {
            "rougeL": 0.25,
            "trainable_params": 10,
            "steps_to_target": 6,
            "total_steps": 12,
            "target_metric": "val_rougeL",
        },
    }
    ours = lora_claim(lora, {"rougeL": {"mean_diff": 0.05, "ci95": [0.01, 0.09]}})["ours"]
    assert "reached standard's final validation ROUGE-L at step 6 of 12" in ours
    lora["targeted"] |= {"steps_to_target": None, "target_metric": "val_loss"}
    ours = lora_claim(lora, {"rougeL": {"mean_diff": 0.05, "ci95": [0.01, 0.09]}})["ours"]
    assert ours.endswith("reached standard's final validation loss never")
