"""`sumcircuit run` end to end on a tiny model, and resuming after a kill during LoRA training."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import sumcircuit.training.loop as loop
from sumcircuit.analysis.adapt.result import AdaptResult
from sumcircuit.analysis.locate.registry import locator
from sumcircuit.analysis.placement.result import PlacementResult
from sumcircuit.cli import main
from sumcircuit.data.sources import load_dataset
from sumcircuit.layout import RunLayout
from sumcircuit.models.trained import TrainingResult
from sumcircuit.report.summary_result import StudySummary
from sumcircuit.study.lock import run_lock

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    rows = []
    for i in range(60):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(30)]
        rows.append(
            {"id": f"d{i}", "document": " ".join(words) + ".", "summary": " ".join(words[:4]) + "."}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(model: Path, data: Path, out: Path) -> list[str]:
    sets = [
        "finetune.limit=8", "finetune.lr=0.01", "finetune.batch_size=4",
        "diff.limit=4", "diff.n_boot=200", "locate.k=2", "attribute.n_boot=200",
    "faithfulness.split=test", "faithfulness.controls=3", "faithfulness.n_boot=200",
        # every size of the 4-layer model, random sets at each (the quick preset's are [1,3,8], [3])
        "faithfulness.sizes=[1,2,3,4]", "faithfulness.control_sizes=[]",
        # the tiny data's validation documents all select (diff.limit), so faithfulness scores
        # on test and validate scores those test documents again, knowingly (recorded)
        "validate.allow_overlap=true",
        "validate.limit=4", "validate.controls=3", "validate.n_boot=200",
        "lora.limit=8", "lora.epochs=2", "lora.rouge_val_limit=2", "lora.batch_size=4", "lora.val_limit=2",
        "evaluate.limit=3", "evaluate.max_new_tokens=6", "evaluate.n_boot=200",
    ]  # fmt: skip
    args = [
        "run",
        "--out",
        str(out),
        "--model",
        str(model),
        "--data",
        str(data),
        "--max-length",
        "64",
    ]
    return args + [a for s in sets for a in ("--set", s)]


def _stage_markers(out: Path) -> list[Path]:
    """Every stage's marker (the report's figure manifest is rewritten with the summary)."""
    return [p for p in out.rglob("stage.json") if p.parent != RunLayout(out).figures]


def test_run_writes_summary_and_report_then_resumes_after_a_kill(
    tiny_dirs, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, capsys
) -> None:
    """Killed mid-way through a LoRA arm, after its first checkpoint: the rerun skips every
    finished stage, resumes the arm from its checkpoint and ends with the weights of an
    uninterrupted run."""
    out = tmp_path / "run"
    real_finetune = loop.finetune
    calls = {"lora": 0}

    killed: dict[str, Any] = {}

    def killed_in_second_lora_arm(config):
        if config.method == "lora":
            calls["lora"] += 1
            if calls["lora"] == 2:  # one step and its checkpoint, then Ctrl-C mid-training
                killed["config"] = config
                real_finetune(replace(config, max_steps=1, checkpoint_every=1))
                raise KeyboardInterrupt
        return real_finetune(config)

    monkeypatch.setattr(loop, "finetune", killed_in_second_lora_arm)
    assert main(_args(tiny_dirs["llama"], tiny_data, out)) == 130
    arm_dir = Path(killed["config"].out)
    assert (arm_dir / "checkpoint.json").exists() and not (arm_dir / "stage.json").exists()
    assert (RunLayout(out) / RunLayout.lora("standard", 0) / "stage.json").exists()
    assert not RunLayout(out).summary_file.exists()
    finished = {
        p.parent.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in _stage_markers(out)
    }
    L = RunLayout
    upstream = {L.FINETUNE, L.DIFF, L.attribute("atp"), L.FAITHFULNESS, L.LOCATE, L.VALIDATE}
    assert upstream <= set(finished)
    assert RunLayout.lora("standard", 0) in finished

    monkeypatch.setattr(loop, "finetune", real_finetune)
    with caplog.at_level("INFO", logger="sumcircuit"):
        assert main(_args(tiny_dirs["llama"], tiny_data, out)) == 0
    assert f"resuming {arm_dir} at epoch 0, step 1" in caplog.text
    # the resumed arm ends with the weights of the same arm trained without interruption
    fresh = real_finetune(replace(killed["config"], out=str(tmp_path / "fresh")))
    assert fresh.complete
    resumed, uninterrupted = (
        load_file(str(d / "adapter_model.safetensors")) for d in (arm_dir, tmp_path / "fresh")
    )
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        torch.testing.assert_close(resumed[name], uninterrupted[name], atol=1e-6, rtol=0)
    # its learning curve: points measured before the kill kept, the rest measured after
    curves = [TrainingResult.load(d).curve for d in (arm_dir, tmp_path / "fresh")]
    assert [p.step for p in curves[0]] == [p.step for p in curves[1]] == [0, 1, 2, 3, 4]
    assert [p.val_loss for p in curves[0]] == pytest.approx([p.val_loss for p in curves[1]])
    for stage, mtime in finished.items():  # finished stages were not redone
        assert (out / stage / "stage.json").stat().st_mtime_ns == mtime, stage

    summary = StudySummary.load(out)
    assert set(summary.lora) == {"base", "full", "standard", "targeted", "random"}
    for row in summary.lora.values():
        assert 0.0 <= row["rougeL"] <= 1.0 and row["rougeL_ci95"][0] <= row["rougeL_ci95"][1]
        assert row["loglik"] < 0 and row["loglik_ci95"][0] <= row["loglik"] <= row["loglik_ci95"][1]
    comps = summary.comparisons
    assert set(comps["vs_standard"]) == {"base", "full", "targeted", "random"}
    assert set(comps["vs_base"]) == {"full", "standard", "targeted", "random"}
    for against in comps.values():
        for diffs in against.values():
            assert set(diffs) == {"rougeL", "loglik"} and diffs["loglik"]["n"] == 3
    lora_claim = summary.paper_claims[2]
    assert set(lora_claim["verdicts"]) == {"rougeL", "loglik"}
    assert (
        summary.lora["targeted"]["trainable_params"] * 2
        == summary.lora["standard"]["trainable_params"]
    )
    assert summary.lora["targeted"]["layers"] == summary.circuit["layers"]
    for name in ("standard", "targeted", "random"):  # 2 epochs x 2 steps, ROUGE-L on
        row = summary.lora[name]
        assert row["total_steps"] == 4 and row["target_metric"] == "val_rougeL"
        assert row["steps_to_target"] is None or 1 <= row["steps_to_target"] <= 4
    assert summary.lora["standard"]["steps_to_target"] is not None  # reaches its own final
    for name in ("standard", "targeted", "random"):  # the same, on the smooth validation loss
        step = summary.lora[name]["steps_to_target_loss"]
        assert step is None or 1 <= step <= 4
    assert summary.lora["standard"]["steps_to_target_loss"] is not None  # its own final
    assert "its validation loss" in summary.paper_claims[2]["ours"]
    assert summary.lora["random"]["layers"] != summary.circuit["layers"]
    assert [c["holds"] in (True, False, None) for c in summary.paper_claims] == [True] * 3
    assert all(c["evidence"] and "evidence_data" in c for c in summary.paper_claims)
    middle = summary.paper_claims[0]["evidence_data"]  # the study's diff keeps per-doc values
    assert middle["method"] == "bootstrap over documents" and 0 <= middle["support"] <= 1
    vs_random = summary.targeted_vs_random["rougeL"]
    assert vs_random["draws"] == [summary.lora["random"]["rougeL"]]
    assert vs_random["percentile"] in (0.0, 50.0, 100.0)
    assert set(summary.causal) >= {"sufficiency", "necessity", "random_percentile"}
    # the ceiling beside the circuit's figures, and the overlap this tiny run allowed, recorded
    assert {"sufficiency_all", "necessity_all", "sufficiency_normalised"} <= set(summary.causal)
    assert summary.causal["fraction_of"] == "m_ft − m_base" and summary.causal["overlap"] > 0
    faith = summary.faithfulness
    assert {"kl", "weight", "atp", "atp-trapezoid"} <= set(faith["areas"])  # diff, attribution
    best = faith["most_faithful"]
    candidates = {k: a for k, a in faith["areas"].items() if locator(k).candidate}
    top = max(candidates, key=lambda k: candidates[k]["cpr"])
    assert faith["choice"]["best_cpr"] == top and best == faith["choice"]["winner"]
    assert best in faith["choice"]["tied"] and faith["ceiling"]["sufficiency"]["ci95"]
    assert {"first-k", "last-k", "evenly-spaced"} <= set(faith["areas"])  # position baselines
    assert summary.circuit["score"] == best  # the circuit is the faithful one
    assert faith["documents"]["scoring"]["split"] == "test"
    assert (
        "exact" not in faith["areas"] and not (RunLayout(out) / RunLayout.EXACT).exists()
    )  # exact.limit: 0
    assert summary.attribution_vs_exact is None
    html = RunLayout(out).report_file.read_text()
    assert html.count("data:image/png;base64,") >= 4 and "LoRA" in html
    assert "Which locator is faithful" in html and "(chosen)" in html
    assert "f(all)" in html and "of m_ft − m_base" in html and "most faithful:" in html
    assert "Attribution vs exact patching" not in html

    # A refused start changes nothing in the finished run: every value is checked before the
    # first stage (a changed option would otherwise clear that stage's marker), and a second
    # run is refused while one holds the directory.
    def files() -> dict[str, int]:
        return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*")}

    before, study = files(), RunLayout(out).study_file.read_bytes()
    args = _args(tiny_dirs["llama"], tiny_data, out)
    capsys.readouterr()
    for bad, words in (
        ("faithfulness.sizes=[1,9]", "faithfulness.sizes holds 9, beyond the 4 layers"),
        ("lora.random_draws=2", "lora.random_draws=2 asks for more random layer sets than exist"),
        ("faithfulness.sizes=[0]", "faithfulness.sizes must be at least 1, got 0"),
    ):
        assert main([*args, "--set", bad]) == 2
        assert words in capsys.readouterr().err
    with run_lock(RunLayout(out)):
        assert main(args) == 2
    assert "is in use by another sumcircuit run (pid" in capsys.readouterr().err
    assert files() == before and RunLayout(out).study_file.read_bytes() == study


def test_run_refuses_a_directory_holding_another_study(
    tiny_dirs, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    RunLayout(out).study_file.write_text(json.dumps({"model": "other", "data": "xsum"}))
    assert main(_args(tiny_dirs["llama"], tiny_data, out)) == 2
    assert "holds another study" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["study.json"]  # no lock file left behind


def test_placement_stage_and_the_arms_that_read_it(
    tiny_dirs, tiny_data: Path, tmp_path: Path
) -> None:
    """With placement.enabled the study runs the adapt stage (on with the curve) and draws the
    placement curve from its own diff, attribution and adaptation scores, trains targeted-adapt on
    the locator that closed the most gap at the circuit's size (an adaptation locator among the
    candidates), circuit-rank at standard's parameter count, and reports both."""
    out = tmp_path / "run"
    sets = [
        "placement.enabled=true", "placement.sizes=[2]", "placement.random_sets=2",
        "placement.limit=8", "placement.n_boot=200",
        # the tiny data's 3 validation documents are the diff's: score on held-out train pairs
        "placement.eval_split=train", "placement.eval_limit=6",
        # the gradient pass reads the first 10 train pairs, the 2-step probe the first 8
        "adapt.limit=10", "adapt.probe_steps=2",
        "lora.arms=[standard,targeted-adapt,circuit-rank]", "lora.epochs=1",
    ]  # fmt: skip
    args = _args(tiny_dirs["llama"], tiny_data, out) + [a for s in sets for a in ("--set", s)]
    assert main(args) == 0
    layout = RunLayout(out)
    placement = layout / layout.PLACEMENT
    assert (placement / "stage.json").exists() and (placement / "placement.png").exists()
    adapt = AdaptResult.load(layout / layout.ADAPT)  # from the first train pairs only
    train = [e.id for e in load_dataset(str(tiny_data)).split("train")]
    assert adapt.parts == ["gradients", "probe", "spectrum"] and adapt.n_layers == 4
    assert adapt.doc_ids == {"gradients": train[:10], "probe": train[:8]}
    assert adapt.provenance["data"]["split"] == "train"
    summary = StudySummary.load(out)
    where = summary.placement
    drawn = {r["locator"] for r in where["rows"]}
    adapting = {"rgn", "fisher", "grad-energy", "probe-norm", "probe-act", "spectrum-snr"}
    assert adapting | {"kl", "atp", "first-k"} <= drawn
    curve = PlacementResult.load(placement)
    assert {curve.locators[n]["directory"] for n in adapting} == {str(layout / layout.ADAPT)}
    # held-out train pairs past the 8 that trained every run and the 10 the gradient pass read
    # (the default offset), not test
    assert (where["documents"]["split"], where["documents"]["offset"]) == ("train", 10)
    chosen = where["chosen"]
    assert chosen["k"] == len(summary.circuit["layers"]) == 2
    best = max((r for r in where["rows"] if r["k"] == 2), key=lambda r: r["gap_closed"])
    assert chosen["locator"] == best["locator"] and "closed the most gap" in chosen["why"]
    assert summary.lora["targeted-adapt"]["layers"] == chosen["layers"]
    assert (
        summary.lora["circuit-rank"]["trainable_params"]
        == summary.lora["standard"]["trainable_params"]
    )
    ranks = TrainingResult.load(layout / layout.lora("circuit-rank", 0)).config
    assert ranks["rank"] == 4 and set(ranks["layer_ranks"]) == {
        str(x) for x in summary.circuit["layers"]
    }
    claim = summary.paper_claims[3]
    assert claim["claim"] == "targeted LoRA on the best adaptation locator reaches standard LoRA"
    assert claim["holds"] in (True, False, None) and set(claim["verdicts"]) == {"rougeL", "loglik"}
    assert "Layers chosen because" in claim["evidence"] and chosen["locator"] in claim["ours"]
    assert [c["claim"] for c in summary.paper_claims].count(claim["claim"]) == 1
    html = layout.report_file.read_text()
    assert "Where to adapt: the placement curve" in html and "targeted-adapt:" in html
    assert "random k-layer sets as a band, standard LoRA and the base model" in html  # its figure
