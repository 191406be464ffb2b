"""Length-bucketed, seeded batch order, and how a global batch is split across processes.

Each epoch: examples sorted by length (ties broken by a seeded random key), cut into global
batches of ``batch_size × world × grad_accum`` consecutive examples (similar lengths → little
padding), and the global batches shuffled with the seed. The order depends only on
``(lengths, global batch size, seed, epoch)``, so a resumed run or a run on another number of
processes with the same global batch sees the same batches.
"""

from __future__ import annotations

import torch


def epoch_batches(lengths: list[int], global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices of each global batch of ``epoch``, in training order."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    tie = torch.rand(len(lengths), generator=gen).tolist()
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], tie[i]))
    batches = [order[s : s + global_batch] for s in range(0, len(order), global_batch)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def micro_batches(
    batch: list[int], batch_size: int, world: int, rank: int, grad_accum: int
) -> list[list[int]]:
    """The ``grad_accum`` micro-batches of ``rank``: the global batch is cut into
    ``world × grad_accum`` consecutive chunks of ``batch_size``; micro-step k of rank r takes
    chunk ``k·world + r`` (a short last batch leaves some chunks empty)."""
    return [
        batch[(k * world + rank) * batch_size : (k * world + rank + 1) * batch_size]
        for k in range(grad_accum)
    ]
