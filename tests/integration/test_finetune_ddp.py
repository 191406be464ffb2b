"""Two CPU processes (gloo, torchrun) train like one process with the same global batch."""

import os
import subprocess
import sys

import pytest

from sumcircuit.models.tiny import save_tiny
from sumcircuit.training import FinetuneConfig, TrainingResult, finetune


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, xsum_sample):
    model = str(save_tiny("llama", tmp_path / "llama", n_layers=2, n_heads=4, hidden=32))
    common = [
        "--model",
        model,
        "--data",
        xsum_sample,
        "--limit",
        "8",
        "--max-length",
        "96",
        "--layers",
        "1",
        "--lr",
        "1e-2",
        "--precision",
        "fp32",
        "--val-limit",
        "4",
        "--no-progress",
    ]
    one = finetune(
        FinetuneConfig(
            out=str(tmp_path / "one"),
            model=model,
            data=xsum_sample,
            limit=8,
            max_length=96,
            layers=[1],
            lr=1e-2,
            precision="fp32",
            val_limit=4,
            batch_size=4,
            progress=False,
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env["OMP_NUM_THREADS"] = "1"

    def two_processes(out: str) -> None:
        argv = ["finetune", "--out", str(tmp_path / out), "--batch-size", "2", *common]
        argv += ["--val-cache", str(tmp_path / "cache")]
        run = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
             "2", "-m", "sumcircuit.cli", *argv],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]

    two_processes("two")
    two = TrainingResult.load(tmp_path / "two")
    assert len(one.step_losses) == len(two.step_losses) == 2
    assert two.step_losses == pytest.approx(one.step_losses, rel=1e-5)
    assert two.epochs[0].val_loss == pytest.approx(one.epochs[0].val_loss, rel=1e-5)
    # curve points (step 1 is mid-epoch): measured by both processes together, like one
    assert [p.step for p in two.curve] == [p.step for p in one.curve] == [0, 1, 2]
    assert [p.val_loss for p in two.curve] == pytest.approx(
        [p.val_loss for p in one.curve], rel=1e-5
    )
    assert two.config_hash != one.config_hash  # batch size per process is part of the config
    # a second two-process run reads the loss before training the first measured: the main
    # process reads the cache and both follow it (neither waits in a loss the other skips)
    assert two.val_loss_start_from is None
    two_processes("again")
    again = TrainingResult.load(tmp_path / "again")
    assert again.val_loss_start_from is not None
    assert again.val_loss_start == two.val_loss_start
    assert again.step_losses == two.step_losses
