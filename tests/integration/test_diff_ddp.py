"""``torchrun --nproc_per_node 2 -m sumcircuit.cli diff`` shards the documents over 2 gloo
processes and writes one result, equal to the single-process ``sumcircuit diff``.

Equal up to float32 noise: a shard pads its batches differently, and SDPA's sums depend on the
padded length and on the CPU's kernels (AVX2 vs AVX-512) in the last bits. The tiny models have
peaked attention, so per-head differences (ΔH ~0.1-1 nat) are far above that noise and a
relative tolerance of 1e-4 fits every quantity; rank-based p-values may still swap near-equal
|ΔH| and are compared to 0.01.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from test_diff_tiny import write_data

import sumcircuit
from sumcircuit.analysis.diff.run import DiffResult
from sumcircuit.cli import main
from sumcircuit.models.tiny import PEAKED_STD, save_tiny


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_env() -> dict[str, str]:
    """This checkout's sources first on the path, one thread per process, no outer launcher."""
    launcher = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launcher}
    src = str(Path(sumcircuit.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_torchrun_diff_writes_one_result_equal_to_one_process(tmp_path, capsys):
    base = save_tiny("llama", tmp_path / "base", seed=0, n_layers=2, init_std=PEAKED_STD)
    ft = save_tiny("llama", tmp_path / "ft", seed=1, n_layers=2, init_std=PEAKED_STD)
    data = write_data(tmp_path / "d.jsonl", 14)
    args = ["diff", "--base", str(base), "--finetuned", str(ft), "--data", data]
    args += ["--n-boot", "200", "--batch-size", "3"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()

    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
    launch += ["--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    launch += ["--master_port", str(free_port()), "-m", "sumcircuit.cli"]
    run = subprocess.run(
        [*launch, *args, "--out", str(tmp_path / "two")],
        env=torchrun_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("; wrote ") == 1  # only rank 0 reports and writes

    single, sharded = DiffResult.load(tmp_path / "one"), DiffResult.load(tmp_path / "two")
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
    assert sharded.summary["timing"]["world_size"] == 2
    assert single.summary["timing"]["world_size"] == 1
    assert sharded.summary["n_docs"] == single.summary["n_docs"] == 14
    # The differences compared are far above float noise (what makes the tolerances meaningful).
    assert single.heads["delta_entropy"].abs().min() > 1e-3
    ranks = ["p_value", "q_value"]  # rank-based: float noise may swap near-equal |ΔH|
    pd.testing.assert_frame_equal(
        sharded.heads.drop(columns=ranks), single.heads.drop(columns=ranks), rtol=1e-4, atol=1e-6
    )
    assert np.allclose(sharded.heads[ranks], single.heads[ranks], atol=0.01)
    pd.testing.assert_frame_equal(sharded.layers, single.layers, rtol=1e-4, atol=1e-6)
