"""One code path for 1 or N processes: plain ``torch.distributed`` under torchrun/accelerate.

:class:`Processes` is the only place that reads ranks: training and analysis both ask it which
process they are, which documents are theirs, and whether they write the outputs (rank 0 only).

Training sums gradients across processes by hand after the micro-batches of a step (each
process's loss is already divided by the *global* number of summary tokens of the step), so N
processes with the same global batch compute the same mean loss and gradient as one process.
The diff shards documents (document i on rank i mod world size) and sums its statistics.

On CUDA the group is ``cpu:gloo,cuda:nccl``: GPU tensors go through NCCL, while the per-document
statistics the analysis keeps in CPU memory are reduced through gloo.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sumcircuit.models.loader import default_device


def _local_device() -> torch.device:
    """This process's device: its own GPU (``LOCAL_RANK``) under a launcher, else the default."""
    device = default_device()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized()


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Whether this process writes outputs and prints (rank 0)."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Processes:
        """Join the process group when launched by torchrun/accelerate (``WORLD_SIZE`` > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1 and not _joined():
            return cls(0, 1, default_device())
        device = _local_device()
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not _joined():
            dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @classmethod
    def current(cls) -> Processes:
        """The group this process already belongs to (one process if none); joins nothing."""
        if not _joined():
            return cls(0, 1, default_device())
        return cls(dist.get_rank(), dist.get_world_size(), _local_device())

    def close(self) -> None:
        """Leave the process group (no-op on one process or when it is already gone)."""
        if self.world > 1 and _joined():
            dist.destroy_process_group()

    def shard(self, n: int) -> list[int]:
        """The indices of ``range(n)`` this process handles: i with i mod world == rank."""
        return list(range(self.rank, n, self.world))

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce ``tensor`` in place by sum (no-op on one process)."""
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def sum_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Sum gradients across processes in one flat all-reduce (missing grads count as 0)."""
        if self.world == 1:
            return
        params = list(params)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            p.grad = flat[offset : offset + g.numel()].view_as(p).clone()
            offset += g.numel()

    def broadcast_(self, params: Iterable[torch.Tensor]) -> None:
        """Copy rank 0's values of ``params`` to every process."""
        if self.world > 1:
            for p in params:
                dist.broadcast(p.data, src=0)

    def on_main(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` on the main process only, then wait for it: for checks that touch files
        (a write test on --out), which several processes would race."""
        if self.main:
            fn(*args, **kwargs)
        self.barrier()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()
