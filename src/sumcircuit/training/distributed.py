"""One code path for 1 or N processes: plain ``torch.distributed`` under torchrun/accelerate.

Gradients are summed across processes by hand after the micro-batches of a step (each process's
loss is already divided by the *global* number of summary tokens of the step), so N processes
with the same global batch compute the same mean loss and gradient as one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from sumcircuit.models.loader import default_device


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Processes:
        """Join the process group when launched by torchrun/accelerate (``WORLD_SIZE`` > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(0, 1, default_device())
        device = default_device()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device)

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

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()
