"""benchmarks/gpu_smoke.sh --dry-run: every step of the GPU smoke check runs on the CPU at toy
size and writes the one output file in the format benchmarks/RESULTS.md describes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("device", "tests", "study", "roofline", "generate", "train")


def test_dry_run_runs_every_step_and_writes_one_file(tmp_path: Path) -> None:
    out = tmp_path / "smoke" / "gpu_smoke.txt"
    env = os.environ | {
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_smoke.sh"), "--dry-run", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = out.read_text()
    assert done.returncode == 0, text[-3000:]
    assert text.startswith("# sumcircuit GPU smoke\nmode: dry-run (cpu, tiny model)\n")
    for step in STEPS:  # a section per step, its exit status and time, and a summary line
        assert f"== step {step} (limit " in text
        assert re.search(rf"^== end {step}: exit 0, \d+ s$", text, re.M), step
        assert re.search(rf"^step {step}: pass \(exit 0, \d+ s\)$", text, re.M), step
    assert text.rstrip().splitlines()[-2] == f"passed: {len(STEPS)} of {len(STEPS)}"
    # the figures: the device tests' tally, the roofline table, both benchmarks' GFLOP/s
    assert re.search(r"^\d+ passed", text, re.M)
    assert "| stage | ran in | GFLOP | seconds | GFLOP/s | % of fp32 peak" in text
    assert re.search(r"^\| lora/targeted-s0 \| \w+ \| [\d.,]+ \| [\d.]+ \| [\d.]+ \|", text, re.M)
    assert re.search(r"^batched GFLOP/s +\d+\.\d+", text, re.M)
    assert re.search(r"^median step standard: .* \d+\.\d GFLOP/s$", text, re.M)
    assert "\r" not in text  # no progress bars
    assert not list(tmp_path.glob("gpu_smoke.*"))  # its work folder is removed
