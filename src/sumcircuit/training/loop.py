"""``finetune(config)``: full or LoRA fine-tuning on summary tokens, resumable, 1 or N processes.

Precision (``--precision auto``, the default): bf16 autocast of the matmuls only where the
hardware runs bf16 fast (CUDA with bf16, or a CPU whose oneDNN reports bf16 support), else fp32.
Measured on this project's 2-core CPU (no avx512_bf16 in /proc/cpuinfo, oneDNN bf16 unsupported,
capability AVX2): a 2048x576 @ 576x1536 matmul ran at 11.4 GFLOP/s fp32 vs 1.4-1.9 GFLOP/s
bf16 (1 thread) and 21 vs 4 GFLOP/s (2 threads) — bf16 is 5-8x *slower* there, so ``auto``
picks fp32 on it. Master weights, optimizer states, the loss and the LM-head logits stay fp32
in every mode. ``benchmarks/train_bench.py precision`` on smollm2-135m (XSum batches of 4):
bf16 autocast moves the loss by ~0.15% and the gradient by 3.5-4.6% (cosine 0.999), and a
training step on that CPU is 20-25x slower than fp32.

Autograd below the lowest adapted layer: with LoRA the base weights are frozen and the input
embeddings do not require gradients, so the blocks below the first adapter build no graph and
the backward pass stops at that layer. Nothing here enables gradient checkpointing or
``enable_input_require_grads`` (either would defeat it); a test pins it.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.data.batching import Prepared, prepare_for
from sumcircuit.data.prompting import collate
from sumcircuit.distributed import Processes
from sumcircuit.io import check_writable_dir, disk_full, share_files, write_json
from sumcircuit.models.loader import load_model, weight_bytes
from sumcircuit.models.trained import CurvePoint, EpochRecord, TrainingResult, record_weights
from sumcircuit.provenance import provenance
from sumcircuit.training.adapters import count_trainable, masked_gradients
from sumcircuit.training.checkpoint import (
    checkpoint_info,
    load_checkpoint,
    remove_checkpoint,
    restore_trainable,
    restoring,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.curve import curve_point, curve_steps
from sumcircuit.training.divergence import check_val_loss, check_weights, stop_diverged
from sumcircuit.training.loss import body_and_head, summary_ce_sum
from sumcircuit.training.order import epoch_batches, micro_batches
from sumcircuit.training.outdir import prepare_out
from sumcircuit.training.precision import autocast, resolved_precision
from sumcircuit.training.schedule import make_scheduler
from sumcircuit.training.select import Adapted, select_adapters
from sumcircuit.training.validation import Validator

log = logging.getLogger(__name__)

HEAD_MASKS = "head_masks.json"


@dataclass
class _Progress:
    """Everything about the data position and running sums that a checkpoint must restore."""

    epoch: int = 0
    batch: int = 0  # global batches done in the current epoch
    step: int = 0  # optimizer steps done
    examples: int = 0  # training examples consumed, whole run
    ce_sum: float = 0.0  # current epoch
    n_summary: int = 0
    n_tokens: int = 0
    train_s: float = 0.0
    epoch_s: float = 0.0
    wall_s: float = 0.0
    val_start: float | None = None  # validation loss before the first step
    val_start_from: str | None = None  # the cache file it was read from (None: measured here)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)  # CurvePoint dicts


def finetune(config: FinetuneConfig) -> TrainingResult:
    """Train ``config.model`` on the summaries of ``config.data``; write ``config.out``.

    Loss: mean cross-entropy over the summary tokens of each optimizer step (all micro-batches
    and processes together). Returns the result also written to ``out/training.json``.
    """
    procs = Processes.from_env()
    # Before any model loads: a bad --out or circuit stops here, not after an epoch. One process
    # checks --out: its write test makes and removes the folder, which would race another's.
    if config.out:
        procs.on_main(check_writable_dir, config.out, "--out", need_bytes=disk_needed(config))
    if config.circuit:
        Circuit.load(config.circuit)
    out, done = prepare_out(config, procs)
    if done:
        log.info("%s already holds this finished run; nothing to do", out)
        return TrainingResult.load(out)
    torch.manual_seed(config.seed)
    loaded = load_model(config.model, device=procs.device)
    tokenizer = loaded.tokenizer
    train = prepare_for(config, tokenizer, split="train")
    val = (
        prepare_for(config, tokenizer, split="validation", limit=config.val_limit)
        if config.val_limit
        else None
    )
    adapted = select_adapters(config, loaded)
    model = adapted.model
    params = [p for p in model.parameters() if p.requires_grad]
    procs.broadcast_(params)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    global_batch = config.batch_size * procs.world * config.grad_accum
    steps_per_epoch = math.ceil(len(train) / global_batch)
    total_steps = steps_per_epoch * config.epochs
    points = curve_steps(total_steps, config.eval_points)
    scheduler = make_scheduler(optimizer, total_steps, config.warmup, config.schedule)
    state = _Progress()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if config.resume and checkpoint_info(out) is not None:
        saved = load_checkpoint(out)
        with restoring(out):
            restore_trainable(out, saved["trainable"], trainable)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            set_rng_states(saved["rng"])
            state = _Progress(**saved["progress"])
        log.info("resuming %s at epoch %d, step %d", out, state.epoch, state.step)
    saved_step = state.step or None  # the step of the last good checkpoint

    def kept() -> str:
        if saved_step is None:
            return "no checkpoint of this run was written yet"
        return f"the last checkpoint (step {saved_step}) is kept; --resume continues from it"

    def checkpoint() -> None:
        nonlocal saved_step
        if procs.main:
            blob = {
                "trainable": {n: p.detach().cpu() for n, p in trainable.items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_states(),
                "progress": vars(state),
            }
            with disk_full(out, kept()):
                save_checkpoint(
                    out, blob, {"config_hash": config.content_hash(), "step": state.step}
                )
            saved_step = state.step
        procs.barrier()

    precision = resolved_precision(config.precision, procs.device)
    result = TrainingResult(
        trainable_params=count_trainable(model, adapted.masks),
        total_params=sum(p.numel() for p in model.parameters()),
        epochs=[],
        wall_s=0.0,
        config=config.to_dict(),
        config_hash=config.content_hash(),
        provenance=provenance(
            config.to_dict(),
            models={"base": loaded.identity},
            data={"train": train.data_identity, "validation": val.data_identity if val else None},
            seed=config.seed,
        ),
        adapted_modules=adapted.modules,
        rank=adapted.rank,
        budget=adapted.budget,
        precision_used=precision,
        resumed_at_step=state.step,
    )
    log.info(
        "%s (%s): %d trainable of %d parameters, %d examples, %d steps",
        config.method,
        precision,
        result.trainable_params,
        result.total_params,
        len(train),
        total_steps,
    )
    lengths = [len(e.input_ids) for e in train.encoded]
    bar = tqdm(
        total=total_steps,
        initial=state.step,
        desc="finetune",
        disable=not (config.progress and procs.main),
    )
    session_start = time.perf_counter()
    wall_at_start = state.wall_s
    pad_id = tokenizer.pad_token_id
    validate = Validator(model, val, config, procs, loaded)

    def add_point(val_loss: float | None, val_rouge: float | None) -> None:
        point = curve_point(state.step, steps_per_epoch, state.examples, val_loss, val_rouge)
        state.curve.append(point)

    if val is not None and state.val_start is None:  # the reference a diverging run is told by
        state.val_start, state.val_start_from = validate.start_loss(config.val_cache)
        if points:
            add_point(state.val_start, None)  # step 0
    with masked_gradients(model, adapted.masks) if adapted.masks else nullcontext():
        model.train()
        while state.epoch < config.epochs:
            batches = epoch_batches(lengths, global_batch, config.seed, state.epoch)
            epoch_start = time.perf_counter() - state.epoch_s
            for batch in batches[state.batch :]:
                t0 = time.perf_counter()
                loss, n_summary, n_tokens = train_step(
                    model, params, train, batch, config, procs, pad_id
                )
                if not math.isfinite(loss):
                    stop_diverged(out, state.step, "the training loss became NaN/inf")
                optimizer.step()
                check_weights(params, out, state.step)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.batch += 1
                state.examples += len(batch)
                state.ce_sum += loss * n_summary
                state.n_summary += n_summary
                state.n_tokens += n_tokens
                state.train_s += time.perf_counter() - t0
                state.step_losses.append(loss)
                state.epoch_s = time.perf_counter() - epoch_start
                state.wall_s = wall_at_start + time.perf_counter() - session_start
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{state.n_tokens / state.train_s:.0f}")
                last_of_epoch = state.batch == len(batches)
                if state.step in points and not last_of_epoch and validate.active:
                    add_point(*validate())  # before a checkpoint, which then holds it
                stopping = config.max_steps is not None and state.step >= config.max_steps
                if not last_of_epoch and (
                    stopping
                    or (config.checkpoint_every and state.step % config.checkpoint_every == 0)
                ):
                    checkpoint()
                if stopping and not last_of_epoch:
                    bar.close()
                    return _partial(result, state, session_start)
            record = _end_epoch(validate, state, epoch_start)
            check_val_loss(  # before its checkpoint is written
                record["val_loss"], state.val_start, out, step=state.step, epoch=state.epoch
            )
            if state.step in points and validate.active:  # the epoch's validation, reused
                add_point(record["val_loss"], record["val_rougeL"])
            state.epochs.append(record)
            state.epoch += 1
            state.batch, state.n_summary, state.n_tokens = 0, 0, 0
            state.ce_sum, state.train_s, state.epoch_s = 0.0, 0.0, 0.0
            state.wall_s = wall_at_start + time.perf_counter() - session_start
            stopping = config.max_steps is not None and state.step >= config.max_steps
            if state.epoch < config.epochs or stopping:  # a finished run saves its model next
                checkpoint()
            if stopping:
                bar.close()
                return _partial(result, state, session_start)
    bar.close()
    model.eval()
    _record_progress(result, state, session_start)
    if procs.main:
        with disk_full(out, kept()):
            _save_model(out, adapted, tokenizer)
            record_weights(result, out)  # checked whenever the run folder is loaded
            result.save(out)
        remove_checkpoint(out)
    procs.barrier()
    return result


def disk_needed(config: FinetuneConfig) -> int:
    """Bytes a run writes at its peak, estimated before the model loads. Full fine-tuning: the
    model copy (float32) and, until it is written, a checkpoint of every weight with its two
    Adam moments — four times the weights. LoRA: adapters and their checkpoint are a few
    percent of the weights; a tenth is a safe margin."""
    weights = weight_bytes(config.model)
    return 4 * weights if config.method == "full" else weights // 10


def train_step(
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    train: Prepared,
    batch: list[int],
    config: FinetuneConfig,
    procs: Processes,
    pad_id: int,
) -> tuple[float, int, int]:
    """Forward/backward over this process's micro-batches of one global batch, gradients summed
    across processes and clipped to norm 1. Returns (global mean loss, summary tokens, tokens)."""
    encoded = train.encoded
    n_summary = sum(encoded[i].n_summary_tokens for i in batch)  # global: every rank knows it
    n_tokens = sum(len(encoded[i].input_ids) for i in batch)
    body, head, cap = body_and_head(model)
    ce_total = torch.zeros((), dtype=torch.float64)
    for micro in micro_batches(
        batch, config.batch_size, procs.world, procs.rank, config.grad_accum
    ):
        if not micro:
            continue
        data = collate([encoded[i] for i in micro], pad_id).to(procs.device)
        with autocast(config, procs.device):
            ce, _ = summary_ce_sum(body, head, data, cap)
        (ce / n_summary).backward()
        ce_total += ce.detach().double().cpu()
    procs.sum_grads(params)
    procs.sum_(ce_total)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    return float(ce_total) / n_summary, n_summary, n_tokens


def _end_epoch(validate: Validator, state: _Progress, epoch_start: float) -> dict[str, Any]:
    val_loss, rouge = validate()
    record = EpochRecord(
        epoch=state.epoch,
        train_loss=state.ce_sum / max(1, state.n_summary),
        val_loss=val_loss,
        wall_s=time.perf_counter() - epoch_start,
        tokens_per_s=state.n_tokens / max(state.train_s, 1e-9),
        val_rougeL=rouge,
    )
    log.info(
        "epoch %d: train loss %.4f, val loss %s, %.0f tokens/s",
        record.epoch,
        record.train_loss,
        f"{val_loss:.4f}" if val_loss is not None else "-",
        record.tokens_per_s,
    )
    return vars(record)


def _record_progress(result: TrainingResult, state: _Progress, session_start: float) -> None:
    """Epochs, step losses and curve points; ``wall_s``: training time of every process that
    trained this run (up to the checkpoint each one left); ``process_wall_s``: this process's
    share; ``val_loss_start``."""
    result.epochs = [EpochRecord(**e) for e in state.epochs]
    result.step_losses = list(state.step_losses)
    result.curve = [CurvePoint(**p) for p in state.curve]
    result.wall_s = state.wall_s
    result.process_wall_s = time.perf_counter() - session_start
    result.val_loss_start = state.val_start
    result.val_loss_start_from = state.val_start_from


def _partial(result: TrainingResult, state: _Progress, session_start: float) -> TrainingResult:
    _record_progress(result, state, session_start)
    result.complete = False
    log.info("stopped at step %d (max_steps); resume with --resume", state.step)
    return result


def _save_model(out: Path, adapted: Adapted, tokenizer: Any) -> None:
    """Full: a loadable model directory (safetensors + tokenizer). LoRA: the adapter, plus the
    head masks of a per-head adapter."""
    adapted.model.save_pretrained(out)
    if adapted.masks:
        write_json(out / HEAD_MASKS, [m.to_dict() for m in adapted.masks])
    if adapted.rank is None:  # full fine-tuning: a directory that load_model(out) loads
        tokenizer.save_pretrained(out)
    share_files(out)  # weights as readable as every other result file
