"""A finished tiny study whose files were damaged afterwards: the rerun verifies every stage's
files before it skips, redoes a damaged stage (and what depends on it) with one log line, and the
commands that read a damaged diff stop with one sentence naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.cli import main
from sumcircuit.layout import RunLayout
from sumcircuit.report.summary_result import StudySummary

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
SETS = [
    "finetune.limit=8", "finetune.lr=0.01", "finetune.batch_size=4",
    "diff.limit=4", "diff.n_boot=200", "locate.k=2", "attribute.n_boot=200",
    "faithfulness.split=test", "faithfulness.controls=3", "faithfulness.n_boot=200",
    "faithfulness.sizes=[1,2,3,4]", "faithfulness.control_sizes=[]",  # not quick's [1,3,8], [3]
    # the tiny data's validation documents all select (diff.limit), so faithfulness scores
    # on test and validate scores those test documents again, knowingly (recorded)
    "validate.allow_overlap=true",
    "validate.limit=4", "validate.controls=3", "validate.n_boot=200",
    "lora.limit=8", "lora.epochs=1", "lora.rouge_val_limit=2", "lora.batch_size=4",
    "lora.val_limit=2", "evaluate.limit=3", "evaluate.max_new_tokens=6", "evaluate.n_boot=200",
]  # fmt: skip


@pytest.fixture(scope="module")
def study(tiny_dirs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One finished tiny study; each test damages its own copy."""
    root = tmp_path_factory.mktemp("trust")
    data = root / "pairs.jsonl"
    rows = []
    for i in range(40):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(30)]
        rows.append(
            {"id": f"d{i}", "document": " ".join(words) + ".", "summary": " ".join(words[:4]) + "."}
        )
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = {"model": tiny_dirs["llama"], "data": data, "run": root / "run"}
    assert main(_args(paths, paths["run"])) == 0
    return paths


def _args(paths: dict[str, Path], out: Path) -> list[str]:
    args = ["run", "--out", str(out), "--model", str(paths["model"]), "--data", str(paths["data"])]
    return args + ["--max-length", "64"] + [a for s in SETS for a in ("--set", s)]


def _copy(study: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(study["run"], tmp_path / "run"))


def _reruns(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "running it again" in r.getMessage()]


def _cut_rows(path: Path, keep: int) -> None:
    """Keep the header and ``keep`` rows: a file cut at a line boundary, still parseable."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: 1 + keep]))


def test_a_truncated_diff_table_reruns_diff_and_what_follows(
    study: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    run = _copy(study, tmp_path)
    original = (RunLayout(run) / RunLayout.DIFF / "layers.csv").read_bytes()
    circuit = Circuit.load(RunLayout(run) / RunLayout.LOCATE)
    summary = StudySummary.load(run)
    _cut_rows(RunLayout(run) / RunLayout.DIFF / "layers.csv", 1)
    with caplog.at_level("INFO"):
        assert main(_args(study, run)) == 0
    assert "Traceback" not in capsys.readouterr().err
    lines = _reruns(caplog)
    assert len(lines) == 1, lines
    assert lines[0].startswith("stage diff: layers.csv changed since it was written (size ")
    assert (RunLayout(run) / RunLayout.DIFF / "layers.csv").read_bytes() == original
    again = Circuit.load(RunLayout(run) / RunLayout.LOCATE)
    assert (again.layers, again.heads) == (circuit.layers, circuit.heads)
    rerun = StudySummary.load(run)
    for arm in ("targeted", "random"):  # trained on the layers of the whole diff, as before
        assert rerun.lora[arm]["layers"] == summary.lora[arm]["layers"]
    assert "diff" not in rerun.timings_s["skipped"]
    assert RunLayout.lora("standard", 0) in rerun.timings_s["skipped"]  # depends on no diff


def test_a_corrupt_circuit_is_repaired_with_one_line(
    study: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    run = _copy(study, tmp_path)
    circuit = Circuit.load(RunLayout(run) / RunLayout.LOCATE)
    path = RunLayout(run) / RunLayout.LOCATE / "circuit.json"
    path.write_text(path.read_text()[:25])
    with caplog.at_level("INFO"):
        assert main(_args(study, run)) == 0
    assert "Traceback" not in capsys.readouterr().err
    lines = _reruns(caplog)
    assert len(lines) == 1 and lines[0].startswith("stage locate: circuit.json changed"), lines
    assert Circuit.load(RunLayout(run) / RunLayout.LOCATE).layers == circuit.layers


def test_locate_and_plot_refuse_a_truncated_diff_with_one_sentence(
    study: dict[str, Path], tmp_path: Path, capsys
) -> None:
    diff = Path(shutil.copytree(RunLayout(study["run"]) / RunLayout.DIFF, tmp_path / "diff"))
    _cut_rows(diff / "layers.csv", 1)
    for argv in (
        ["locate", "--diff", str(diff), "--out", str(tmp_path / "circuit.json")],
        ["plot", "--diff", str(diff), "--out", str(tmp_path / "plots")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "layers.csv" in err and "is damaged" in err and "sumcircuit diff" in err, err
    assert not (tmp_path / "circuit.json").exists()
