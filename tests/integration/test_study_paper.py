"""`sumcircuit run --preset paper` end to end on a tiny model: every LoRA arm × 3 seeds × 3 random
draws, with the preset's arms, seeds and draws kept and only the sizes made small."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sumcircuit.training.loop as loop
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.cli import main
from sumcircuit.layout import RunLayout
from sumcircuit.models.tiny import save_tiny
from sumcircuit.models.trained import TrainingResult
from sumcircuit.report.summary_result import StudySummary
from sumcircuit.study import arms
from sumcircuit.study.config import PRESETS

SEEDS = [0, 1, 2]
DRAWS = 3
N_LAYERS = 6  # 4 layers outside a 2-layer circuit: random draws of 2 layers can differ
K = 2
RANDOMS = [f"random{d}" for d in range(1, DRAWS + 1)]
ARMS = PRESETS["paper"]["lora"]["arms"]  # every registered arm
ARM_NAMES = [name for arm in ARMS for name in (RANDOMS if arm == "random" else [arm])]
# The preset's arms, seeds and draws; every size small (about a minute on 2 idle cores).
SETS = [
    "finetune.limit=4", "finetune.epochs=1", "finetune.lr=0.01", "finetune.val_limit=1",
    "diff.limit=3", "diff.n_boot=100", "attribute.n_boot=100", "locate.k=2",
    "faithfulness.split=test", "faithfulness.limit=3", "faithfulness.sizes=[1,2]",
    "faithfulness.controls=2", "faithfulness.control_sizes=[2]", "faithfulness.n_boot=100",
    # the tiny data's validation documents all select (diff.limit), so faithfulness scores
    # on test and validate scores those test documents again, knowingly (recorded)
    "validate.allow_overlap=true",
    "validate.limit=2", "validate.controls=2", "validate.n_boot=100",
    "lora.limit=4", "lora.epochs=1", "lora.rouge_val_limit=1", "lora.val_limit=1",
    "evaluate.limit=2", "evaluate.max_new_tokens=3", "evaluate.n_boot=100",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("paper") / "llama6", n_layers=N_LAYERS)


def _args(model: Path, data: str, out: Path) -> list[str]:
    args = ["run", "--preset", "paper", "--out", str(out), "--model", str(model)]
    args += ["--data", data, "--max-length", "64"]
    return args + [a for s in SETS for a in ("--set", s)]


def _stage_markers(out: Path) -> list[Path]:
    """Every stage's marker (the report's figure manifest is rewritten with the summary)."""
    return [p for p in out.rglob("stage.json") if p.parent != RunLayout(out).figures]


def test_paper_preset_print_config_resolves_every_arm(capsys) -> None:
    assert main(["run", "--preset", "paper", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["preset"] == "paper" and printed["seeds"] == SEEDS
    assert printed["lora"]["arms"] == list(ARMS) and printed["lora"]["random_draws"] == DRAWS
    # the paper preset runs every registered arm but the two of "Where to adapt", which the
    # placement preset runs (targeted-adapt reads the placement curve)
    assert set(ARMS) == set(arms.ARMS) - {"targeted-adapt", "circuit-rank"}
    assert {"targeted-adapt", "circuit-rank"} <= set(PRESETS["placement"]["lora"]["arms"])
    assert printed["lora"]["epochs"] == PRESETS["paper"]["lora"]["epochs"]


def test_paper_preset_trains_every_arm_seed_and_draw_then_skips_all(
    model: Path, xsum_sample: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    real_finetune = loop.finetune
    trained: list[str] = []

    def record(config):
        trained.append(Path(config.out).relative_to(out).as_posix())
        return real_finetune(config)

    monkeypatch.setattr(loop, "finetune", record)
    assert main(_args(model, xsum_sample, out)) == 0

    lora_stages = [RunLayout.lora(name, seed) for name in ARM_NAMES for seed in SEEDS]
    assert trained == ["finetune", *lora_stages]
    _check_run(out)

    # The same command again: every stage is skipped, nothing is trained or written.
    stamps = {p: p.stat().st_mtime_ns for p in _stage_markers(out)}
    trained.clear()
    assert main(_args(model, xsum_sample, out)) == 0
    assert trained == []
    assert {p: p.stat().st_mtime_ns for p in _stage_markers(out)} == stamps
    assert set(StudySummary.load(out).timings_s["skipped"]) == {
        p.parent.relative_to(out).as_posix() for p in stamps
    }


def _check_run(out: Path) -> None:
    """Every arm × seed trained and evaluated; the summary and report show every arm."""
    lora_stages = [RunLayout.lora(name, seed) for name in ARM_NAMES for seed in SEEDS]
    assert len(lora_stages) == 27
    eval_stages = ["base", "full", *(s.removeprefix(f"{RunLayout.LORA}/") for s in lora_stages)]
    for stage in ["finetune", "locate-kl", *lora_stages]:
        assert (out / stage / "stage.json").is_file(), stage
    for key in eval_stages:
        assert (RunLayout(out) / RunLayout.evaluate(key) / "stage.json").is_file(), key
    assert sorted(p.name for p in (RunLayout(out) / RunLayout.EVALUATE).iterdir()) == sorted(
        eval_stages
    )

    summary = StudySummary.load(out)
    assert summary.preset == "paper" and summary.config["seeds"] == SEEDS
    assert summary.config["lora"]["arms"] == list(ARMS)
    assert summary.config["lora"]["random_draws"] == DRAWS
    assert set(summary.lora) == {"base", "full", *ARM_NAMES}
    versus = summary.comparisons["vs_standard"]
    assert set(versus) == {"base", "full", *ARM_NAMES} - {"standard"}
    assert all(versus[name]["rougeL"] and versus[name]["loglik"] for name in versus)
    rows = summary.lora
    for name in ARM_NAMES:
        assert 0.0 <= rows[name]["rougeL"] <= 1.0 and rows[name]["epochs"] == 1, name
        step, total = rows[name]["steps_to_target"], rows[name]["total_steps"]
        assert total >= 1 and (step is None or 0 <= step <= total), name
        # each seed of an arm trained the layers (heads) its row reports
        for seed in SEEDS:
            run = TrainingResult.load(RunLayout(out) / RunLayout.lora(name, seed))
            assert run.config["layers"] == rows[name]["layers"], (name, seed)
            assert run.config["heads"] == rows[name]["heads"], (name, seed)

    circuit = summary.circuit["layers"]
    assert len(circuit) == K and rows["targeted"]["layers"] == circuit
    assert rows["targeted-equal-budget"]["layers"] == circuit
    assert rows["targeted-kl"]["layers"] == Circuit.load(out / "locate-kl").layers
    draws = [rows[name]["layers"] for name in RANDOMS]
    for layers in draws:
        assert len(layers) == K and not set(layers) & set(circuit)
    assert len({tuple(d) for d in draws}) > 1  # seeded draws: not all the same pair
    outside = [layer for layer in summary.layers_ranked if layer not in circuit]
    assert sorted(rows["anti"]["layers"]) == sorted(outside[-K:])  # least changed, not circuit
    assert all(h[0] in circuit for h in rows["heads"]["heads"])

    params = {name: rows[name]["trainable_params"] for name in ARM_NAMES}
    # every layer has the same width: a K-layer arm has K/N_LAYERS of standard's parameters
    assert params["targeted"] * N_LAYERS == params["standard"] * K
    for name in ["targeted-kl", "anti", *RANDOMS]:
        assert params[name] == params["targeted"], name
    assert 0 < params["heads"] < params["targeted"]
    # equal budget: rank_eq = round(rank * n_standard / n_targeted) (training/adapters.py), so
    # the counts differ by at most half the targeted arm's entries per unit of rank
    budget = TrainingResult.load(RunLayout(out) / RunLayout.lora("targeted-equal-budget", 0)).budget
    assert budget["standard_params"] == params["standard"]
    assert budget["targeted_params"] == params["targeted-equal-budget"]
    assert budget["targeted_params_at_rank"] == params["targeted"]
    per_rank = params["targeted"] / budget["rank"]
    assert abs(params["targeted-equal-budget"] - params["standard"]) <= per_rank / 2

    html = RunLayout(out).report_file.read_text()
    for name in ["base", "full", *ARM_NAMES]:
        assert f">{name}<" in html, name
