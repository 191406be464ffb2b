"""Documents sharded over 2 gloo processes give the single-process diff.

Equal up to float32 noise: a shard pads its batches differently, and SDPA's sums depend on the
padded length and on the CPU's kernels (AVX2 vs AVX-512) in the last bits. The tiny models have
peaked attention, so per-head differences (ΔH ~0.1-1 nat) are far above that noise and a
relative tolerance of 1e-4 fits every quantity; rank-based p-values may still swap near-equal
|ΔH| and are compared to 0.01.
"""

import os

import numpy as np
import pandas as pd
import torch.distributed as dist
import torch.multiprocessing as mp
from test_diff_tiny import write_data

from sumcircuit.analysis.diff import DiffConfig, DiffResult, run_diff
from sumcircuit.models.tiny import PEAKED_STD, save_tiny


def _worker(rank: int, world: int, port: int, config: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        run_diff(DiffConfig.from_dict(config)).save(f"{out}/rank{rank}")
    finally:
        dist.destroy_process_group()


def test_two_ranks_equal_one_process(tmp_path):
    base = save_tiny("llama", tmp_path / "base", seed=0, n_layers=2, init_std=PEAKED_STD)
    ft = save_tiny("llama", tmp_path / "ft", seed=1, n_layers=2, init_std=PEAKED_STD)
    data = write_data(tmp_path / "d.jsonl", 14)
    config = DiffConfig(finetuned=str(ft), base=str(base), data=data, n_boot=200, batch_size=3)
    single = run_diff(config)
    port = 29500 + os.getpid() % 1000
    mp.spawn(_worker, args=(2, port, config.to_dict(), str(tmp_path)), nprocs=2, join=True)
    # The differences compared are far above float noise (what makes the tolerances meaningful).
    assert single.heads["delta_entropy"].abs().min() > 1e-3
    for rank in (0, 1):
        sharded = DiffResult.load(tmp_path / f"rank{rank}")
        assert sharded.summary["n_docs"] == 14 and sharded.summary["timing"]["world_size"] == 2
        ranks = ["p_value", "q_value"]  # rank-based: float noise may swap near-equal |ΔH|
        pd.testing.assert_frame_equal(
            sharded.heads.drop(columns=ranks),
            single.heads.drop(columns=ranks),
            rtol=1e-4,
            atol=1e-6,
        )
        assert np.allclose(sharded.heads[ranks], single.heads[ranks], atol=0.01)
        pd.testing.assert_frame_equal(sharded.layers, single.layers, rtol=1e-4, atol=1e-6)
