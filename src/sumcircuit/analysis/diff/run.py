"""Differential analysis: how a fine-tuned model's attention and residual stream differ from its
base model's, per head and per layer, streamed over documents.

Per batch both models run once each on the *same* token ids (the base model's tokenizer):

1. the base model, with its attention routed through :mod:`~sumcircuit.analysis.diff.capture`:
   each layer keeps only the region's query rows (B, H, R, d) and its keys (B, Hkv, T, d) — a
   half KV cache, not the (B, H, T, T) maps — and block hooks keep the residual stream at the
   region rows (B, R, D) and add the base ActMag;
2. the fine-tuned model: at each layer both models' attention rows (B, H, R, T) are computed
   from the queries and keys, turned into per-document region sums of entropy, normalized
   entropy, KL both ways and JS (:func:`~sumcircuit.analysis.diff.accumulate.head_region_sums`), and
   dropped before the next layer; block hooks add ActMag, cosine and CKA of the residual stream.

Only per-document sums survive a batch (:class:`~sumcircuit.analysis.diff.accumulate.DiffAccumulator`),
so memory does not grow with the number of documents. Logits are computed for the last position
only (``logits_to_keep=1``). Layers and heads are numbered from 0. On several processes
(``torchrun ... sumcircuit.cli diff``, group joined through :class:`~sumcircuit.distributed.Processes`)
documents are sharded across ranks (document i on rank i mod world size) and the sums reduced;
every rank returns the same result as one process.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from sumcircuit.analysis.causal.patching import PairConfig
from sumcircuit.analysis.diff.accumulate import (
    HEAD_METRICS,
    PER_DOC_LAYER_METRICS,
    DiffAccumulator,
    head_region_sums,
)
from sumcircuit.analysis.diff.capture import (
    LayerAttention,
    Rows,
    capture_attention,
    gather_rows,
    row_probs,
)
from sumcircuit.analysis.diff.result import MEASURES, DiffResult
from sumcircuit.analysis.diff.stats import summarize
from sumcircuit.analysis.diff.weights import (
    head_weight_changes,
    layer_weight_changes,
    parameter_weight_changes,
)
from sumcircuit.data.batching import iter_batches, prepare_for
from sumcircuit.data.prompting import Batch
from sumcircuit.distributed import Processes
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.hooks import hooks
from sumcircuit.models.loader import LoadedModel
from sumcircuit.models.pair import check_pair, load_pair
from sumcircuit.provenance import provenance

log = logging.getLogger(__name__)

__all__ = ["MEASURES", "DiffConfig", "DiffResult", "run_diff"]

REGIONS = ("summary", "document", "all")


@dataclass
class DiffConfig(PairConfig):
    """What to compare (the pair and documents of :class:`PairConfig`), and where."""

    region: str = field(
        default="summary",
        metadata={
            "help": "query positions analysed: summary (predict summary tokens), document, all",
            "choices": REGIONS,
        },
    )
    per_doc: bool = field(default=False, metadata={"help": "also write per_doc.parquet"})


class _PairRunner:
    """Runs one batch through both models and feeds the accumulator (see the module docstring)."""

    def __init__(self, base: LoadedModel, ft: LoadedModel, acc: DiffAccumulator) -> None:
        self.base, self.ft, self.acc = base, ft, acc
        self.arch = base.arch
        self.docs = np.zeros(0, dtype=np.int64)
        self.rows: Rows | None = None
        self.attn: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}
        self.hidden: dict[int, torch.Tensor] = {}
        self.peak_store_bytes = 0  # largest base-pass store of one batch (q rows, keys, hidden)

    # -- sinks of the base pass ---------------------------------------------------------------
    def base_attention(self, att: LayerAttention) -> None:
        self.attn[att.layer] = (gather_rows(att.query, self.rows, 2), att.key, att.scaling)

    def base_block(self, layer: int):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output  # (B, T, D)
            self.hidden[layer] = gather_rows(h, self.rows, 1)  # (B, R, D)

        return hook

    # -- sinks of the fine-tuned pass ---------------------------------------------------------
    def ft_attention(self, att: LayerAttention) -> None:
        q_base, k_base, scale_base = self.attn.pop(att.layer)
        mask_rows = gather_rows(att.mask, self.rows, 2)  # (B, 1, R, T)
        p = row_probs(q_base, k_base, mask_rows, scale_base)  # (B, H, R, T)
        q = row_probs(gather_rows(att.query, self.rows, 2), att.key, mask_rows, att.scaling)
        n_keys = mask_rows.sum(dim=-1)[:, 0, :]  # (B, R)
        self.acc.add_heads(self.docs, att.layer, head_region_sums(p, q, n_keys, self.rows.valid))

    def ft_block(self, layer: int):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            h_ft = gather_rows(h, self.rows, 1)
            self.acc.add_hidden(self.docs, layer, self.hidden.pop(layer), h_ft, self.rows.valid)

        return hook

    def contexts(self):
        blocks = range(self.arch.n_layers)
        return (
            capture_attention(self.base.model, self.arch, self.base_attention),
            hooks(
                self.base.model,
                forward={self.arch.block_name(i): self.base_block(i) for i in blocks},
            ),
            capture_attention(self.ft.model, self.arch, self.ft_attention),
            hooks(
                self.ft.model, forward={self.arch.block_name(i): self.ft_block(i) for i in blocks}
            ),
        )

    def run(self, docs: list[int], batch: Batch, region: str) -> int:
        """Process one batch; returns the number of region positions in it."""
        device = self.base.device
        rows = Rows.from_mask(batch.region(region))
        self.docs = np.asarray(docs, dtype=np.int64)
        self.acc.add_counts(self.docs, rows.valid)
        if rows.width == 0:
            return 0
        self.rows = Rows(rows.index.to(device), rows.valid.to(device))
        inputs = {
            "input_ids": batch.input_ids.to(device),
            "attention_mask": batch.attention_mask.to(device),
            "use_cache": False,
            "logits_to_keep": 1,
        }
        self.base.model(**inputs)
        if len(self.attn) != self.arch.n_layers or len(self.hidden) != self.arch.n_layers:
            seen = sorted(self.attn)
            raise SumcircuitError(
                f"attention maps were captured for layers {seen} only, of {self.arch.n_layers}; "
                "this model's attention does not run through transformers' attention interface, "
                "so the diff cannot read its maps"
            )
        stored = [t for q, k, _ in self.attn.values() for t in (q, k)] + list(self.hidden.values())
        nbytes = sum(t.numel() * t.element_size() for t in stored)
        self.peak_store_bytes = max(self.peak_store_bytes, nbytes)
        self.ft.model(**inputs)
        self.attn.clear()
        self.hidden.clear()
        return int(rows.valid.sum())


def _per_doc_frame(acc: DiffAccumulator, ids: list[str], keep: np.ndarray) -> pd.DataFrame:
    L, H = acc.n_layers, acc.n_heads
    docs = np.flatnonzero(keep)
    counts = acc.counts[docs].astype(np.float64)
    frame = pd.DataFrame(
        {
            "doc_id": np.repeat(np.asarray(ids, dtype=object)[docs], L * H),
            "layer": np.tile(np.repeat(np.arange(L), H), len(docs)),
            "head": np.tile(np.arange(H), len(docs) * L),
            "n_positions": np.repeat(acc.counts[docs], L * H),
        }
    )
    for m in HEAD_METRICS:
        frame[m] = (acc.head_sums[m][docs] / counts[:, None, None]).reshape(-1)
    for m in PER_DOC_LAYER_METRICS:  # a layer's value on each of its heads' rows
        frame[m] = np.repeat(acc.layer_sums[m][docs] / counts[:, None], H, axis=1).reshape(-1)
    return frame


def run_diff(
    config: DiffConfig,
    *,
    base: LoadedModel | None = None,
    finetuned: LoadedModel | None = None,
    processes: Processes | None = None,
) -> DiffResult:
    """Compare ``config.finetuned`` with ``config.base`` over the documents of ``config.split``.

    Already loaded models may be passed (tests, benchmarks); they are used as they are.
    ``processes`` (default: the process group already joined, if any — see
    :meth:`Processes.current`) shards the documents; every rank returns the full result.
    """
    procs = processes or Processes.current()
    if base is None or finetuned is None:
        device = config.device or procs.device
        base, finetuned = load_pair(
            config.base,
            config.finetuned,
            dtype=config.dtype,
            device=device,
            stage="diff",
            allow_identical=True,  # a model against itself: every difference exactly zero
        )
    else:
        check_pair(base, finetuned, stage="diff", allow_identical=True)
    arch = base.arch
    prepared = prepare_for(config, base.tokenizer)
    n = len(prepared)
    mine = procs.shard(n)
    acc = DiffAccumulator(n, arch.n_layers, arch.n_heads)
    runner = _PairRunner(base, finetuned, acc)
    pad = base.tokenizer.pad_token_id
    encoded = [prepared.encoded[i] for i in mine]
    start, forward_tokens = time.perf_counter(), 0
    n_batches = -(-len(encoded) // config.batch_size)
    with torch.inference_mode(), ExitStack() as stack:
        for context in runner.contexts():
            stack.enter_context(context)
        progress = tqdm(
            iter_batches(encoded, config.batch_size, pad),
            total=n_batches,
            desc="diff",
            unit="batch",
            disable=not procs.main or None,
        )
        for local, batch in progress:
            runner.run([mine[i] for i in local], batch, config.region)
            forward_tokens += int(batch.attention_mask.sum())
    if procs.world > 1:
        acc.all_reduce()
    seconds = time.perf_counter() - start

    head_w = head_weight_changes(base.model, finetuned.model, arch)
    layer_w = layer_weight_changes(base.model, finetuned.model, arch)
    heads, layers, summary, keep = summarize(
        acc,
        head_w["combined"].to_numpy().reshape(arch.n_layers, arch.n_heads),
        np.asarray(layer_w),
        n_boot=config.n_boot,
        seed=config.seed,
    )
    excluded = [prepared.ids[i] for i in np.flatnonzero(~keep)]
    if excluded:
        log.warning(
            "%d documents have no %s positions and were excluded", len(excluded), config.region
        )
    summary |= {
        "region": config.region,
        "excluded_ids": excluded,
        "n_layers": arch.n_layers,
        "n_heads": arch.n_heads,
        "n_kv_heads": arch.n_kv_heads,
        "numbering": "layers and heads are numbered from 0",
        "timing": {
            "seconds": seconds,
            "forward_tokens_per_model": forward_tokens,
            "tokens_per_s": 2 * forward_tokens / seconds if seconds > 0 else None,
            "world_size": procs.world,
        },
        "memory": {
            "accumulator_fixed_bytes": acc.nbytes(per_doc=False),
            "accumulator_bytes": acc.nbytes(),
            "peak_batch_store_bytes": runner.peak_store_bytes,
        },
        "data_report": prepared.report,
        "provenance": provenance(
            config,
            models={"base": base.identity, "finetuned": finetuned.identity},
            # the ids: locate and validate keep scoring off the documents that selected
            data=prepared.data_identity | {"ids": list(prepared.ids)},
            seed=config.seed,
        ),
    }
    return DiffResult(
        summary=summary,
        heads=heads,
        layers=layers,
        head_weights=head_w,
        parameter_weights=parameter_weight_changes(base.model, finetuned.model),
        per_doc=_per_doc_frame(acc, prepared.ids, keep) if config.per_doc else None,
    )
