"""`sumcircuit run --finetuned`: an existing fine-tune analysed against --model, no finetune stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sumcircuit.training.loop as loop
from sumcircuit.analysis.diff.result import DiffResult
from sumcircuit.cli import main
from sumcircuit.layout import RunLayout
from sumcircuit.models.tiny import save_tiny
from sumcircuit.report.summary_result import StudySummary
from sumcircuit.study.external import ExternalFinetune

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
SETS = [
    "diff.limit=4", "diff.n_boot=200", "locate.k=2", "attribute.n_boot=200",
    "faithfulness.split=test", "faithfulness.controls=3", "faithfulness.n_boot=200",
    "faithfulness.sizes=[1,2,3,4]", "faithfulness.control_sizes=[]",  # not quick's [1,3,8], [3]
    # the tiny data's validation documents all select (diff.limit), so faithfulness scores
    # on test and validate scores those test documents again, knowingly (recorded)
    "validate.allow_overlap=true",
    "validate.limit=4", "validate.controls=3", "validate.n_boot=200",
    "lora.arms=[standard]", "lora.limit=8", "lora.epochs=1", "lora.rouge_val_limit=2",
    "lora.batch_size=4", "lora.val_limit=2",
    "evaluate.limit=3", "evaluate.max_new_tokens=4", "evaluate.n_boot=200",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    rows = []
    for i in range(40):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(30)]
        rows.append(
            {"id": f"d{i}", "document": " ".join(words) + ".", "summary": " ".join(words[:4]) + "."}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(model: Path, finetuned: Path, data: Path, out: Path) -> list[str]:
    args = ["run", "--out", str(out), "--model", str(model), "--finetuned", str(finetuned)]
    args += ["--data", str(data), "--max-length", "64"]
    return args + [a for s in SETS for a in ("--set", s)]


def _stage_markers(out: Path) -> list[Path]:
    """Every stage's marker (the report's figure manifest is rewritten with the summary)."""
    return [p for p in out.rglob("stage.json") if p.parent != RunLayout(out).figures]


def test_run_with_an_external_finetune_skips_training_it(
    tiny_dirs, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finetuned = save_tiny("llama", tmp_path / "ft", seed=1)  # same shape and tokenizer
    real_finetune = loop.finetune
    methods: list[str] = []

    def record(config):
        methods.append(config.method)
        return real_finetune(config)

    monkeypatch.setattr(loop, "finetune", record)
    out = tmp_path / "run"
    assert main(_args(tiny_dirs["llama"], finetuned, tiny_data, out)) == 0
    assert methods == ["lora"]  # the standard arm only: no full fine-tuning

    external = ExternalFinetune.load(RunLayout(out) / RunLayout.FINETUNE)
    assert external.path == str(finetuned.resolve())
    assert external.identity["sha256"] and len(external.identity["sha256"]) == 64
    assert (RunLayout(out) / RunLayout.FINETUNE / "stage.json").exists()
    assert not (RunLayout(out) / RunLayout.FINETUNE / "model.safetensors").exists()

    models = DiffResult.load(RunLayout(out) / RunLayout.DIFF).summary["provenance"]["models"]
    assert models["base"]["source"] == str(tiny_dirs["llama"])
    assert models["finetuned"]["source"] == str(finetuned.resolve())
    assert models["finetuned"]["sha256"] == external.identity["sha256"]

    summary = StudySummary.load(out)
    assert summary.finetuned == {"path": external.path, "sha256": external.identity["sha256"]}
    assert summary.lora["full"]["trainable_params"] is None
    assert 0.0 <= summary.lora["full"]["rougeL"] <= 1.0

    # Resumed with the same inputs: nothing runs again.
    stamps = {p: p.stat().st_mtime_ns for p in _stage_markers(out)}
    assert main(_args(tiny_dirs["llama"], finetuned, tiny_data, out)) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert methods == ["lora"]


def test_an_incompatible_finetune_fails_before_any_stage(
    tiny_dirs, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    assert main(_args(tiny_dirs["llama"], tiny_dirs["gpt2"], tiny_data, out)) == 2
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1, lines  # one sentence, no traceback
    assert "different architectures" in lines[0] and "sumcircuit run --finetuned" in lines[0]
    assert not out.exists()
