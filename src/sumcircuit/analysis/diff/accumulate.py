"""Streaming per-document accumulation of the diff metrics.

Per batch, the diff hands over region *sums* per document (never maps or hidden states); this
module adds them into fixed-size arrays indexed by document:

- per head, ``head_sums[m]`` of shape (n_docs, L, H) for each metric in :data:`HEAD_METRICS`;
- per layer, ``layer_sums[m]`` of shape (n_docs, L) for each metric in :data:`LAYER_METRICS`;
- ``counts`` (n_docs,): region positions per document (the same in every layer);
- one streaming :class:`~sumcircuit.metrics.representation.LinearCKA` per layer (O(D²) each).

Memory is O(n_docs·L·H) for the per-document arrays (needed for the bootstrap; 100 documents ×
30 layers × 9 heads × 7 metrics is 1.5 MB) plus O(L·D²) for CKA, independent of the number of
tokens. :meth:`DiffAccumulator.all_reduce` sums the arrays over ``torch.distributed`` ranks and
merges the CKA moments, so sharding documents across ranks gives the single-process result.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sumcircuit.metrics.attention import entropy, js, kl, normalized_entropy, region_mean
from sumcircuit.metrics.representation import LinearCKA, norm_sum, token_cosine

__all__ = [
    "HEAD_METRICS",
    "LAYER_METRICS",
    "PER_DOC_LAYER_METRICS",
    "DiffAccumulator",
    "head_region_sums",
]

HEAD_METRICS: tuple[str, ...] = (
    "entropy_base",
    "entropy_ft",
    "norm_entropy_base",
    "norm_entropy_ft",
    "kl_base_ft",
    "kl_ft_base",
    "js",
)
LAYER_METRICS: tuple[str, ...] = ("actmag_base", "actmag_ft", "cosine")
#: the layer metrics ``per_doc.parquet`` also keeps (each document's mean over its region tokens),
#: so that the ActMag ranking can be bootstrapped over documents
PER_DOC_LAYER_METRICS: tuple[str, ...] = ("actmag_base", "actmag_ft")


def head_region_sums(p: Tensor, q: Tensor, n_keys: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """Region sums per document and head of every attention metric of one layer.

    p, q: (B, H, R, T) base and fine-tuned attention rows; n_keys: (B, R) keys each row may
    attend to; valid: (B, R) bool, the rows that are region positions. Returns
    {metric: (B, H) float64} with metric ∈ :data:`HEAD_METRICS`: Σ over valid rows of H(p),
    H(q), H/ln(n_keys) of each, KL(p‖q), KL(q‖p), JS(p, q) (nats).
    """
    values = {
        "entropy_base": entropy(p),
        "entropy_ft": entropy(q),
        "norm_entropy_base": normalized_entropy(p, n_keys),
        "norm_entropy_ft": normalized_entropy(q, n_keys),
        "kl_base_ft": kl(p, q),
        "kl_ft_base": kl(q, p),
        "js": js(p, q),
    }  # each (B, H, R)
    return {name: region_mean(v, valid)[0].double() for name, v in values.items()}


class DiffAccumulator:
    """Per-document sums of the diff metrics; see the module docstring for the layout."""

    def __init__(self, n_docs: int, n_layers: int, n_heads: int) -> None:
        self.n_docs, self.n_layers, self.n_heads = n_docs, n_layers, n_heads
        self.counts = np.zeros(n_docs, dtype=np.int64)
        self.head_sums = {m: np.zeros((n_docs, n_layers, n_heads)) for m in HEAD_METRICS}
        self.layer_sums = {m: np.zeros((n_docs, n_layers)) for m in LAYER_METRICS}
        # Products in float32 (fast), moments merged in float64.
        self.cka = [LinearCKA(compute_dtype=torch.float32) for _ in range(n_layers)]

    def add_counts(self, docs: np.ndarray, valid: Tensor) -> None:
        """docs: (B,) document indices; valid: (B, R) region rows."""
        self.counts[docs] += valid.sum(dim=1).cpu().numpy()

    def add_heads(self, docs: np.ndarray, layer: int, sums: dict[str, Tensor]) -> None:
        """sums: {metric: (B, H)} from :func:`head_region_sums`."""
        for name, value in sums.items():
            self.head_sums[name][docs, layer] += value.cpu().numpy()

    def add_hidden(
        self, docs: np.ndarray, layer: int, h_base: Tensor, h_ft: Tensor, valid: Tensor
    ) -> None:
        """Residual stream after block ``layer`` at the region rows: h_*: (B, R, D), valid (B, R)."""
        for name, h in (("actmag_base", h_base), ("actmag_ft", h_ft)):
            self.layer_sums[name][docs, layer] += norm_sum(h, valid)[0].double().cpu().numpy()
        self.layer_sums["cosine"][docs, layer] += (
            token_cosine(h_base, h_ft, valid)[0].double().cpu().numpy()
        )
        self.cka[layer].update(h_base, h_ft, valid)

    def nbytes(self, *, per_doc: bool = True) -> int:
        """Bytes held; ``per_doc=False`` counts only what does not scale with documents."""
        fixed = sum(
            t.numel() * t.element_size()
            for c in self.cka
            for t in (c.mean_x, c.mean_y, c.cxx, c.cyy, c.cxy)
            if t is not None
        )
        if not per_doc:
            return fixed
        arrays = [self.counts, *self.head_sums.values(), *self.layer_sums.values()]
        return fixed + sum(a.nbytes for a in arrays)

    def all_reduce(self) -> None:
        """Sum the per-document arrays over ``torch.distributed`` ranks (each rank filled only
        its own documents) and merge every rank's CKA moments, in rank order, on all ranks."""
        import torch.distributed as dist

        arrays = [self.counts, *self.head_sums.values(), *self.layer_sums.values()]
        for array in arrays:
            tensor = torch.from_numpy(array)
            dist.all_reduce(tensor)  # in place on the shared numpy buffer
        gathered: list[list[LinearCKA] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, self.cka)
        merged = [LinearCKA(compute_dtype=torch.float32) for _ in range(self.n_layers)]
        for rank_cka in gathered:
            for target, part in zip(merged, rank_cka or [], strict=True):
                target.merge(part)
        self.cka = merged
