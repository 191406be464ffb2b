"""`sumcircuit placement` end to end on a tiny model: the curve's runs, statistics, figure and
resume; the refusal of outcome documents that trained; export-peft of a placement and of a run
with per-layer ranks (peft loads both)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from peft import LoraConfig, get_peft_model

from sumcircuit.analysis.placement.gap import CurveStats
from sumcircuit.analysis.placement.result import PlacementResult
from sumcircuit.cli import main
from sumcircuit.data.sources import load_dataset
from sumcircuit.io import read_json
from sumcircuit.models.archs import Arch
from sumcircuit.models.tiny import tiny_model
from sumcircuit.models.trained import load_trained
from sumcircuit.training.adapters import count_trainable

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    rows = []
    for i in range(80):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(30)]
        rows.append(
            {"id": f"d{i}", "document": " ".join(words) + ".", "summary": " ".join(words[:4]) + "."}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "placement", "--model", str(model), "--data", str(data), "--limit", "8",
        "--max-length", "64", "--sizes", "1,2", "--random-sets", "2", "--n-boot", "200",
        "--locators", "first-k,last-k", "--no-progress", "--out", str(out), *extra,
    ]  # fmt: skip


def _lora_ranks(peft_model, blocks: str) -> dict[int, set[int]]:
    """Layer -> the ranks of its LoRA modules."""
    found: dict[int, set[int]] = {}
    for name, module in peft_model.named_modules():
        match = re.search(rf"{re.escape(blocks)}\.(\d+)\.", name)
        if match and hasattr(module, "lora_A") and "default" in module.lora_A:
            found.setdefault(int(match.group(1)), set()).add(
                module.lora_A["default"].weight.shape[0]
            )
    return found


def test_curve_end_to_end_resumes_and_exports(
    tiny_dirs, tiny_data: Path, tmp_path: Path, capsys, caplog
) -> None:
    out = tmp_path / "curve"
    with caplog.at_level(logging.INFO, logger="sumcircuit"):
        assert main(_args(tiny_dirs["llama"], tiny_data, out)) == 0
    printed = capsys.readouterr().out
    assert "base model" in printed and "standard (all 4 layers, rank 8)" in printed
    assert re.search(r"same-rank last-k\s+2  2,3 ", printed)
    result = PlacementResult.load(out)
    first = {(r["locator"], r["k"]): r["layers"] for r in result.rows}
    assert first == {("first-k", 1): [0], ("last-k", 1): [3], ("first-k", 2): [0, 1],
                     ("last-k", 2): [2, 3]}  # fmt: skip
    bands = {b["k"]: b["layers"] for b in result.random}
    assert all(len(v) == 2 and len({tuple(x) for x in v}) == 2 for v in bands.values())
    # every distinct layer set trained once; same steps and rank in every run
    trained = {k for k in result.runs if k != "base"}
    sets = {tuple(x) for b in bands.values() for x in b} | {tuple(v) for v in first.values()}
    assert len(trained) == len(sets) + 1 and "all-r8" in trained
    assert {result.runs[k]["steps"] for k in trained} == {2}
    assert (
        result.runs["all-r8"]["trainable_params"]
        == 4 * result.runs["layers-0-r8"]["trainable_params"]
    )
    assert caplog.text.count("lora (") == len(trained)  # one training per distinct set
    # the outcome documents: validation, disjoint from the training pairs
    dataset = load_dataset(str(tiny_data))
    training = {e.id for e in dataset.split("train")[:8]}
    outcome = result.documents["outcome"]
    assert outcome["split"] == "validation" and outcome["n"] == len(result.per_doc["base"]) > 0
    assert not training & set(outcome["ids"])
    assert result.provenance["data"]["training"]["ids"] == [
        e.id for e in dataset.split("train")[:8]
    ]
    # each row's numbers, recomputed from the per-document values in the file
    frame = result.per_doc_frame()
    for row in result.rows:
        band = result.band(row["k"])["runs"]
        keys = [row["run"], *band, "all-r8"]
        stats = CurveStats(frame[keys].to_numpy(), n_boot=200, seed=0)
        assert row["gap_closed"] == pytest.approx(stats.gap_closed(0, [1, 2], 3)[0])
        assert row["percentile"] == stats.percentile(0, [1, 2])
        assert row["loglik"] == pytest.approx(frame[row["run"]].mean())
    assert (out / "placement.png").stat().st_size > 0 and (out / "placement.svg").exists()

    # rerun: every run is read back, nothing trains or scores again; the same curve
    before = (out / "placement.json").read_text()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sumcircuit"):
        assert main(_args(tiny_dirs["llama"], tiny_data, out)) == 0
    assert "lora (" not in caplog.text
    assert caplog.text.count("already holds this finished run") == len(trained)
    again = json.loads((out / "placement.json").read_text())
    assert again["rows"] == json.loads(before)["rows"]

    # export the top-2 layers of last-k as a peft LoraConfig; peft adapts exactly them
    peft_dir = tmp_path / "peft"
    args = ["export-peft", "--placement", str(out), "--locator", "last-k", "--k", "2",
            "--out", str(peft_dir)]  # fmt: skip
    assert main(args) == 0
    assert "on layers [2, 3]" in capsys.readouterr().out
    config = LoraConfig.from_pretrained(str(peft_dir))
    blocks = Arch.from_model(tiny_model("llama")).spec.blocks
    assert _lora_ranks(get_peft_model(tiny_model("llama"), config), blocks) == {2: {8}, 3: {8}}
    best = result.best_at(1)
    peft_best = tmp_path / "peft-best"
    assert main(["export-peft", "--placement", str(out / "placement.json"), "--k", "1",
                 "--out", str(peft_best)]) == 0  # fmt: skip
    assert read_json(peft_best / "sumcircuit-export.json")["layers"] == best["layers"]
    assert read_json(peft_best / "sumcircuit-export.json")["source"]["locator"] == best["locator"]


def test_outcome_documents_that_trained_are_refused(
    tiny_dirs, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "curve"
    args = _args(tiny_dirs["llama"], tiny_data, out, "--eval-split", "train", "--eval-offset", "4")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "include 4 that the training runs read (train documents 0-7" in err
    assert "raise --eval-offset past them" in err and err.count("\n") == 1
    assert not (out / "runs").exists()  # refused before anything trained
    assert main([*args[:-4], "--eval-split", "test"]) == 2
    assert "is reserved for judging models" in capsys.readouterr().err


def test_per_layer_ranks_train_load_and_export(
    tiny_dirs, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    """A run with --layer-ranks (the circuit-rank arm's shape): standard's parameter count, its
    adapter loads back, and export-peft --run writes a rank_pattern peft applies."""
    run = tmp_path / "run"
    args = ["finetune", "--model", str(tiny_dirs["llama"]), "--data", str(tiny_data),
            "--limit", "4", "--max-length", "64", "--rank", "4", "--alpha", "8",
            "--layer-ranks", "1=20", "--val-limit", "0", "--no-progress", "--out", str(run)]  # fmt: skip
    assert main(args) == 0
    loaded = load_trained(str(tiny_dirs["llama"]), adapter_dir=run)
    blocks = loaded.arch.spec.blocks
    assert _lora_ranks(loaded.model, blocks) == {0: {4}, 1: {20}, 2: {4}, 3: {4}}
    standard = get_peft_model(
        tiny_model("llama"),
        LoraConfig(
            r=8, target_modules=loaded.arch.lora_targets(list(range(4)), ("q", "k", "v", "o"))
        ),
    )
    assert count_trainable(standard) == sum(
        p.numel() for n, p in loaded.model.named_parameters() if "lora_" in n
    )
    peft_dir = tmp_path / "peft"
    assert main(["export-peft", "--run", str(run), "--out", str(peft_dir)]) == 0
    assert "per-layer ranks (rank_pattern): {1: 20}" in capsys.readouterr().out
    config = LoraConfig.from_pretrained(str(peft_dir))
    assert (config.r, config.lora_alpha) == (4, 8.0) and config.alpha_pattern
    exported = get_peft_model(tiny_model("llama"), config)
    assert _lora_ranks(exported, blocks) == {0: {4}, 1: {20}, 2: {4}, 3: {4}}
    scaling = {
        m.scaling["default"] for m in exported.modules() if hasattr(m, "lora_A") and m.lora_A
    }
    assert scaling == {2.0}
    assert np.isclose(count_trainable(exported), count_trainable(standard))
