"""Gradient scores of the LoRA target matrices at the base model, from one pass over N batches.

Per batch b the loss is the mean cross-entropy over the batch's summary tokens (the training
loss, :func:`~sumcircuit.training.loss.summary_ce_sum`), in fp32, and g_b(W) its gradient with
respect to a target matrix W. Per matrix:

- ``rgn`` = (1/N) Σ_b ‖g_b(W)‖_F / ‖W‖_F — the relative gradient norm of Surgical Fine-Tuning's
  Auto-RGN (Lee et al., ICLR 2023), which picks the blocks whose weights the task gradient
  moves most relative to their size;
- ``fisher`` = Σ_b Σ_ij g_b(W)_ij² — the empirical Fisher information summed over the matrix
  (Sung et al., NeurIPS 2021). From *per-batch* gradients, not per-example ones: the same
  backward pass serves all three scores, and per-example gradients would cost a backward pass
  per example (``batch_size`` times as many). Per-batch squares average out the part of the
  examples' gradients that disagree, so this is the Fisher of batch-mean gradients — a lower
  bound of the per-example one that ranks the matrices whose gradients agree across examples;
- ``grad_energy`` = Σ_{i≤r} σ_i(G)² with G = Σ_b g_b(W) the accumulated gradient and σ_i its
  singular values — ‖G‖ restricted to its best rank-r subspace: the first-order loss drop a
  rank-r update of unit norm can buy (the LoRA-GA initialisation aligns LoRA with these
  directions). r is the LoRA rank.

A layer's score is the sum over its matrices (:func:`~sumcircuit.analysis.adapt.targets.per_layer`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sumcircuit.data.prompting import Batch
from sumcircuit.errors import SumcircuitError
from sumcircuit.training.loss import body_and_head, summary_ce_sum


def relative_norm(grad: torch.Tensor, weight: torch.Tensor) -> float:
    """‖grad‖_F / ‖weight‖_F (both the same shape), in float64."""
    return float(grad.double().norm() / weight.double().norm())


def rank_energy(matrix: torch.Tensor, rank: int) -> float:
    """Σ_{i≤rank} σ_i² of a ``(m, n)`` matrix: the squared Frobenius norm of its best
    rank-``rank`` approximation (Eckart–Young), in float64."""
    sigma = torch.linalg.svdvals(matrix.double())  # descending
    return float(sigma[:rank].pow(2).sum())


@dataclass
class GradientScores:
    """Per target matrix (M,): ``rgn``, ``fisher``, ``grad_energy`` (see the module docstring),
    over ``n_batches`` batches whose mean summary-token loss was ``mean_loss``."""

    rgn: np.ndarray
    fisher: np.ndarray
    grad_energy: np.ndarray
    n_batches: int
    mean_loss: float


@contextmanager
def only_these_require_grad(model: nn.Module, params: list[nn.Parameter]) -> Iterator[None]:
    """Gradients for ``params`` only while the block runs (nothing else builds a graph);
    every parameter's ``requires_grad`` is restored on exit."""
    before = {id(p): p.requires_grad for p in model.parameters()}
    chosen = {id(p) for p in params}
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)
        yield
    finally:
        for p in model.parameters():
            p.requires_grad_(before[id(p)])


def gradient_scores(
    model: nn.Module,
    weights: list[nn.Parameter],
    batches: Iterable[Batch],
    rank: int,
    *,
    progress: bool = True,
    total: int | None = None,
) -> GradientScores:
    """One forward and backward pass per batch at the model's current weights (none change)."""
    if rank < 1:
        raise SumcircuitError(f"the rank of the gradient energy must be at least 1, got {rank}")
    body, head, cap = body_and_head(model)
    device = weights[0].device
    n = len(weights)
    rgn = np.zeros(n, dtype=np.float64)
    fisher = np.zeros(n, dtype=np.float64)
    accumulated = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
    losses: list[float] = []
    was_training = model.training
    model.eval()  # no dropout: the scores describe the base model as it is
    try:
        with only_these_require_grad(model, weights):
            for batch in tqdm(batches, total=total, desc="gradients", disable=not progress):
                batch = batch.to(device)
                ce, n_summary = summary_ce_sum(body, head, batch, cap)
                if n_summary == 0:
                    raise SumcircuitError("a batch has no summary token; check --max-length")
                loss = ce / n_summary
                grads = torch.autograd.grad(loss, weights)
                for i, g in enumerate(grads):
                    g = g.detach().double()
                    rgn[i] += relative_norm(g, weights[i].detach())
                    fisher[i] += float(g.pow(2).sum())
                    accumulated[i] += g
                losses.append(float(loss.detach()))
    finally:
        model.train(was_training)
    if not losses:
        raise SumcircuitError("the gradient pass got no batch; give at least one training pair")
    energy = np.array([rank_energy(g, rank) for g in accumulated])
    return GradientScores(
        rgn=rgn / len(losses),
        fisher=fisher,
        grad_energy=energy,
        n_batches=len(losses),
        mean_loss=float(np.mean(losses)),
    )
