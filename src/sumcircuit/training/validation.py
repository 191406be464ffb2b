"""Validation of the model being trained: summary-token loss and ROUGE-L of greedy summaries.

The loss runs on every process (documents sharded, sums reduced); generation for ROUGE-L on the
main process only (the other processes get None), as nothing else is collective there.

The loss is measured several times on the same documents (before training, at each curve point,
at each epoch's end), and an adapter on layers ``l..`` leaves blocks ``0..l-1`` frozen: their
output on a validation batch is the same every time. So the first validation records the
residual stream entering the lowest trainable block, and the later ones resume there
(:mod:`sumcircuit.analysis.causal.resume`), bit for bit the same loss without the frozen blocks'
compute — when every trainable parameter lies in the blocks (never for a full fine-tune) and the
recorded streams fit :data:`PREFIX_CACHE_BYTES`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from sumcircuit.analysis.causal.resume import recording_residuals, resuming
from sumcircuit.data.batching import Prepared, iter_batches, prepare_for
from sumcircuit.distributed import Processes
from sumcircuit.evaluation.generate import rouge_on_split
from sumcircuit.io import config_hash, read_json, sha256_bytes, write_json
from sumcircuit.models.archs import Arch
from sumcircuit.models.loader import LoadedModel
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.loss import body_and_head, summary_ce_sum, unwrapped
from sumcircuit.training.precision import autocast, bf16_weights, resolved_precision

log = logging.getLogger(__name__)

GENERATION_TOKENS = 48
GENERATION_BATCH = 16  # validation summaries generated together
#: The most memory the recorded frozen-prefix residual streams may take (float32 bytes).
PREFIX_CACHE_BYTES = 1 << 30


def frozen_below(model: torch.nn.Module, arch: Arch) -> int:
    """The lowest decoder block with a trainable parameter: blocks below it (and the embeddings)
    are frozen. 0 when a trainable parameter lies outside the blocks (a full fine-tune)."""
    base = unwrapped(model)
    trainable = {id(p) for p in base.parameters() if p.requires_grad}
    blocks = list(arch.blocks(base))
    for layer, block in enumerate(blocks):
        if any(id(p) in trainable for p in block.parameters()):
            above = {id(p) for b in blocks[layer:] for p in b.parameters()}
            return layer if trainable <= above else 0
    return 0


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module,
    val: Prepared,
    batch_size: int,
    procs: Processes,
    pad_id: int,
    config: FinetuneConfig,
    prefix: _FrozenPrefix | None = None,
) -> float:
    """Summary-token CE over ``val`` (Σ CE / Σ tokens), documents sharded across processes;
    ``prefix``: the frozen blocks' recorded outputs, resumed from (recorded on first use)."""
    body, head, cap = body_and_head(model)
    sums = torch.zeros(2, dtype=torch.float64)
    for i, (_, batch) in enumerate(iter_batches(val.encoded, batch_size, pad_id)):
        if i % procs.world != procs.rank:
            continue
        with autocast(config, procs.device), prefix.over(i) if prefix else nullcontext():
            ce, n = summary_ce_sum(body, head, batch.to(procs.device), cap)
        sums += torch.tensor([float(ce), n], dtype=torch.float64)
    procs.sum_(sums)
    return float(sums[0] / sums[1])


class _FrozenPrefix:
    """Per validation batch, the residual stream entering block ``layer`` of ``model`` (whose
    blocks below ``layer`` are frozen): recorded the first time a batch runs, resumed from after."""

    def __init__(self, model: torch.nn.Module, arch: Arch, layer: int) -> None:
        self.base = unwrapped(model)
        self.arch, self.layer = arch, layer
        self.residuals: dict[int, torch.Tensor] = {}

    @contextmanager
    def over(self, batch: int) -> Iterator[None]:
        if batch in self.residuals:
            with resuming(self.base, self.arch, self.layer, {self.layer: self.residuals[batch]}):
                yield
            return
        with recording_residuals(self.base, self.arch, [self.layer]) as store:
            yield
        self.residuals[batch] = store[self.layer]


class Validator:
    """``validator()`` -> ``(val_loss, val_rougeL)`` of ``model`` now, each None when off
    (``val_limit`` 0, ``rouge_every_epoch`` 0) and ROUGE-L None off the main process. The model
    is put in eval mode for it and back in train mode after. Every process must call it at the
    same step (the loss is summed across processes)."""

    def __init__(
        self,
        model: torch.nn.Module,
        val: Prepared | None,
        config: FinetuneConfig,
        procs: Processes,
        loaded: LoadedModel,
    ) -> None:
        self.model, self.val, self.config, self.procs, self.loaded = (
            model,
            val,
            config,
            procs,
            loaded,
        )
        self._prompts: Prepared | None = None  # ROUGE prompts, tokenized on first use
        self._prefix: _FrozenPrefix | None = None
        layer = frozen_below(model, loaded.arch)
        if val is not None and layer > 0 and _stream_bytes(val, loaded.arch) <= PREFIX_CACHE_BYTES:
            self._prefix = _FrozenPrefix(model, loaded.arch, layer)

    @property
    def active(self) -> bool:
        """Whether a validation measures anything (on this process)."""
        return self.val is not None or self.rouge_on

    @property
    def rouge_on(self) -> bool:
        return bool(self.config.rouge_every_epoch) and self.procs.main

    def loss(self) -> float | None:
        if self.val is None:
            return None
        self.model.eval()
        try:
            return validation_loss(
                self.model,
                self.val,
                self.config.batch_size,
                self.procs,
                self.loaded.tokenizer.pad_token_id,
                self.config,
                self._prefix,
            )
        finally:
            self.model.train()

    def start_loss(self, cache: str | None) -> tuple[float | None, str | None]:
        """The loss before training, which is the base model's (adapters start at zero, a full
        fine-tune at the base), and where it came from: read from ``cache`` where a run of the
        same weights, documents, batch size and precision measured it (the file's path), else
        measured (None) and written there for the next run (an unreadable entry is measured
        again)."""
        if cache is None or self.val is None:
            return self.loss(), None
        key = self._start_key()
        path = Path(cache) / f"val-loss-start-{key}.json"
        # the main process reads; every process follows its answer (the loss is collective)
        found = torch.tensor([0.0, 0.0], dtype=torch.float64)
        if self.procs.main:
            value = _cached_loss(path, key)
            if value is not None:
                found[:] = torch.tensor([1.0, value], dtype=torch.float64)
        self.procs.broadcast_([found])
        if found[0]:
            log.info("validation loss before training: %s (measured by an earlier run)", path)
            return float(found[1]), str(path)
        value = self.loss()
        if self.procs.main and value is not None:
            write_json(path, {"key": key, "val_loss": value, "documents": len(self.val.encoded)})
        return value, None

    def _start_key(self) -> str:
        """Everything the loss before training depends on: the weights, the token ids and
        summary starts of the documents, the batching, precision, device and torch."""
        assert self.val is not None
        tokens = [(e.input_ids, e.summary_start) for e in self.val.encoded]
        return config_hash(
            {
                "model": self.loaded.identity,
                "documents": sha256_bytes(json.dumps(tokens).encode()),
                "batch_size": self.config.batch_size,
                "precision": resolved_precision(self.config.precision, self.loaded.device),
                "device": self.procs.device.type,
                "world": self.procs.world,
                "torch": torch.__version__,
            }
        )

    def rouge(self) -> float | None:
        """ROUGE-L F1 of greedy summaries of the first ``rouge_every_epoch`` validation docs."""
        if not self.rouge_on:
            return None
        config, tokenizer = self.config, self.loaded.tokenizer
        bf16 = resolved_precision(config.precision, self.loaded.device) == "bf16"
        if self._prompts is None:
            self._prompts = prepare_for(
                config,
                tokenizer,
                split="validation",
                limit=config.rouge_every_epoch,
                with_summary=False,
                reserve=GENERATION_TOKENS,
            )
        self.model.eval()
        try:
            # no weight changes here: each thin decode step reads the bf16 copies autocast
            # would otherwise make anew at every call
            with bf16_weights(self.model, bf16):
                scores, _ = rouge_on_split(
                    self.model,
                    tokenizer,
                    self._prompts,
                    batch_size=GENERATION_BATCH,
                    max_new_tokens=GENERATION_TOKENS,
                    seed=config.seed,
                    bf16=bf16,
                    progress=False,
                )
        finally:
            self.model.train()
        return float(scores["rougeL"]["f"])

    def __call__(self) -> tuple[float | None, float | None]:
        return self.loss(), self.rouge()


def _stream_bytes(val: Prepared, arch: Arch) -> int:
    """An upper bound of the recorded residual streams' float32 bytes: every document at the
    longest one's length."""
    longest = max((len(e.input_ids) for e in val.encoded), default=0)
    return 4 * len(val.encoded) * longest * arch.hidden


def _cached_loss(path: Path, key: str) -> float | None:
    """The loss a cache entry holds, or None when it is absent, unreadable or for another key."""
    try:
        entry = read_json(path)
    except (OSError, ValueError):
        return None
    if isinstance(entry, dict) and entry.get("key") == key:
        value = entry.get("val_loss")
        return value if isinstance(value, float) else None
    return None
