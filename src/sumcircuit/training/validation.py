"""Validation of the model being trained: summary-token loss and ROUGE-L of greedy summaries.

The loss runs on every process (documents sharded, sums reduced); generation for ROUGE-L on the
main process only (the other processes get None), as nothing else is collective there.
"""

from __future__ import annotations

import torch

from sumcircuit.data.batching import Prepared, iter_batches, prepare_for
from sumcircuit.distributed import Processes
from sumcircuit.evaluation.generate import rouge_on_split
from sumcircuit.models.loader import LoadedModel
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.loss import body_and_head, summary_ce_sum
from sumcircuit.training.precision import autocast, resolved_precision

GENERATION_TOKENS = 48
GENERATION_BATCH = 16  # validation summaries generated together


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module,
    val: Prepared,
    batch_size: int,
    procs: Processes,
    pad_id: int,
    config: FinetuneConfig,
) -> float:
    """Summary-token CE over ``val`` (Σ CE / Σ tokens), documents sharded across processes."""
    body, head, cap = body_and_head(model)
    sums = torch.zeros(2, dtype=torch.float64)
    for i, (_, batch) in enumerate(iter_batches(val.encoded, batch_size, pad_id)):
        if i % procs.world != procs.rank:
            continue
        with autocast(config, procs.device):
            ce, n = summary_ce_sum(body, head, batch.to(procs.device), cap)
        sums += torch.tensor([float(ce), n], dtype=torch.float64)
    procs.sum_(sums)
    return float(sums[0] / sums[1])


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
            )
        finally:
            self.model.train()

    def rouge(self) -> float | None:
        """ROUGE-L F1 of greedy summaries of the first ``rouge_every_epoch`` validation docs."""
        if not self.rouge_on:
            return None
        config, tokenizer = self.config, self.loaded.tokenizer
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
            scores, _ = rouge_on_split(
                self.model,
                tokenizer,
                self._prompts,
                batch_size=GENERATION_BATCH,
                max_new_tokens=GENERATION_TOKENS,
                seed=config.seed,
                bf16=resolved_precision(config.precision, self.loaded.device) == "bf16",
                progress=False,
            )
        finally:
            self.model.train()
        return float(scores["rougeL"]["f"])

    def __call__(self) -> tuple[float | None, float | None]:
        return self.loss(), self.rouge()
