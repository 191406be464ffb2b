"""Roofline of a study run: analytic FLOPs of every stage against a matmul peak measured now.

    python benchmarks/roofline.py --run RUN [--out roofline.json] [--device cpu] [--threads N]

For each stage of ``RUN`` (a ``sumcircuit run`` directory): the FLOPs the stage's model work
takes, counted from the documents it actually read (re-encoded from its recorded config with the
base model's tokenizer and batched by the same functions the stage uses), its measured time
(``summary.json`` ``timings_s``; a stage that invocation skipped falls back to the time its
``stage.json`` recorded when it ran), the achieved GFLOP/s, and that rate as a fraction of the
matmul peak measured in this process: torch matmuls of the model's own shapes
((M × d) @ (d × d), (M × d) @ (d × d_ff), (M × d_ff) @ (d_ff × d), (128 × d) @ (d × V), M =
batch size × max length of the run) with the torch thread count the stages use (torch's default,
i.e. ``OMP_NUM_THREADS`` or the core count; ``--threads`` overrides), in fp32 and, where the
hardware has bf16 units (oneDNN's bf16 check on CPUs, ``is_bf16_supported`` on CUDA), in bf16.
The peak of a precision is its fastest shape. Prints a markdown table with the CPU (or GPU) and
its flags; ``--out`` writes the same numbers as JSON.

FLOPs (a multiply-add is 2). Per layer the matmul weights are P = d·(H·h) + 2·d·(K·h) + (H·h)·d
+ m·d·d_ff (q, k, v, o; m = 3 gated MLP matrices, 2 for GPT-2/NeoX), d hidden, H heads, K KV
heads, h head dim, L layers, V vocabulary. A padded batch costs its padded width T per row (the
hardware computes padding):
- forward of a row of T tokens: 2·P·L·T (matmuls) + 2·L·T²·(H·h) (attention scores and values,
  4·L·T²·(H·h) halved for causality) + 2·d·V per row whose logits are computed. Logits are
  computed only where a loss or log-likelihood reads them (summary positions; one position per
  row where ``logits_to_keep=1``; one per row and decode step in generation);
- backward ≈ 2× forward for what needs gradients: activation gradients (1× the matmuls, 2× the
  attention) from the loss down to the lowest layer that needs them, plus weight gradients
  (1× the matmuls, and the LM head's) only where weights train. LoRA: no weight gradients of
  frozen weights and no backward below the lowest adapted layer; the adapters themselves cost
  6 FLOPs per trainable parameter and token of the adapted layers (2 forward, 4 backward);
- finetune / lora/<arm>: every optimizer step's micro-batches (forward + backward, logits at
  summary positions), the validation losses (one before training, one per curve point and epoch
  end: forwards; not the first where the run read it from the study's cache; after the first
  measured, LoRA's start at its lowest adapted block), and the ROUGE validations' generation (an upper bound: 48 decode steps each,
  what ``training.validation`` allows; the summaries are not saved);
- diff: two forwards per batch (logits of the last position only) plus the metric work on the
  summary rows R: both models' attention rows again (2 · 2·R·T·(H·h) per layer) and the CKA
  moments (3 · 2·R·d² per layer, in float64);
- attribute/<method>: atp is two forward + activation-backward passes per batch (frozen
  weights, gradients down to layer 0); ig-* two forwards and ``ig_steps`` forward + backward
  passes; checked against the recorded ``passes``;
- exact, faithfulness, validate: the result's recorded forward count, spread evenly over the
  batches of the documents they patched (every forward is one batch through one model), the
  blocks' share scaled to the blocks the forwards ran (``timing.layer_forwards`` of
  ``forwards × L``: none below a set's lowest patched layer, nor a patched layer's own block);
  the LM head runs in every forward;
- evaluate/<key>: generation — each prompt but its last token prefilled alone, then per batch
  one step per generated token (the longest summary of the batch, re-tokenized from the saved
  predictions, + 1 for the end, at most ``max_new_tokens``) over every row, attending over the
  whole static cache (prompt width + 1 + ``max_new_tokens``); with ``--no-generate`` the prefill
  alone — plus the reference log-likelihood, which continues that prefill: the last prompt
  token and the reference, attending over the prompt's cache, logits at every one of them;
- locate and report: no model work (no row).
Not counted: norms, softmax, activations, optimizer updates, data loading, model loading,
bootstrap resampling and plotting — all in the measured stage times, which makes every achieved
rate a lower bound of the rate of the model work itself.

What to expect: generation (the evaluate stages, and the LoRA arms' ROUGE validations) is the
furthest from its limit — greedy decoding runs 20 rows per step, so every decode step is a
(20 × d) @ (d × ·) matmul (skinny, memory-bound, far from the peak of the (1024 × d) matmuls that
training and patching run), plus per-step Python and cache work. The table cannot separate it from
the log-likelihood forwards in the same stage, so the script prints both rates for each evaluate
stage (the log-likelihood times itself). Measured on /work/runs/quick-base (one invocation, but
under heavy contention from other jobs; the peak measured later, under other contention, so only
the rates compare, not the fractions): evaluate's generation part 34-47 GFLOP/s in 4 of 5
stages, its log-likelihood forwards 55-151, diff and attribute/atp 133-158 (all fp32), the bf16
training stages 158-267; faithfulness's patching forwards also ran at 44 GFLOP/s there, which
contention alone may explain. Commands and tables: ``benchmarks/RESULTS.md`` ("Roofline").
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from sumcircuit.errors import SumcircuitError

# What generation in ``training.validation`` allows per ROUGE validation (upper bound).
TRAIN_ROUGE_TOKENS = 48
TRAIN_ROUGE_BATCH = 16
HEAD_ROWS = 128  # rows of the LM-head shape in the peak measurement (summary positions)


# -- the model's sizes --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelDims:
    """The sizes the FLOP counts need (see the module docstring for the symbols)."""

    n_layers: int  # L
    hidden: int  # d
    n_heads: int  # H
    n_kv_heads: int  # K
    head_dim: int  # h
    d_ff: int
    vocab: int  # V
    mlp_matrices: int = 3  # 3 for a gated MLP (Llama, Gemma), 2 for GPT-2 and NeoX

    @classmethod
    def from_config(cls, config: Any) -> ModelDims:
        """From a transformers config (GPT-2, NeoX, Llama, Gemma3, Qwen2 naming)."""
        config = getattr(config, "text_config", None) or config

        def first(*names: str, default: Any = None) -> Any:
            for name in names:
                value = getattr(config, name, None)
                if value is not None:
                    return value
            if default is None:
                raise SumcircuitError(f"the model config has none of {names}")
            return default

        hidden = first("hidden_size", "n_embd")
        heads = first("num_attention_heads", "n_head")
        gated = config.model_type not in ("gpt2", "gpt_neox")
        return cls(
            n_layers=first("num_hidden_layers", "n_layer"),
            hidden=hidden,
            n_heads=heads,
            n_kv_heads=first("num_key_value_heads", default=heads),
            head_dim=first("head_dim", default=hidden // heads),
            d_ff=first("intermediate_size", "n_inner", default=4 * hidden),
            vocab=first("vocab_size"),
            mlp_matrices=3 if gated else 2,
        )

    @property
    def attn_width(self) -> int:
        """H·h: the width of the attention scores' and values' matmuls."""
        return self.n_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        """P: matmul weights of one block (q, k, v, o and the MLP)."""
        d, kv = self.hidden, self.n_kv_heads * self.head_dim
        return 2 * d * self.attn_width + 2 * d * kv + self.mlp_matrices * d * self.d_ff


# -- counting (pure functions of sizes and token counts) ----------------------------------------
def forward_flops(dims: ModelDims, widths: Sequence[int], logit_rows: int) -> float:
    """One forward of rows of ``widths`` tokens each (padded), with logits at ``logit_rows``
    positions in all: 2·P·L·T + 2·L·T²·(H·h) per row + 2·d·V per logit row."""
    body = sum(2 * dims.layer_params * dims.n_layers * t for t in widths)
    attention = sum(2 * dims.n_layers * t * t * dims.attn_width for t in widths)
    return float(body + attention + 2 * dims.hidden * dims.vocab * logit_rows)


def continuation_flops(dims: ModelDims, prefix: int, tokens: int) -> float:
    """``tokens`` new tokens of one row continuing a KV cache of ``prefix`` positions, logits at
    every new token: 2·P·L·c + 4·L·(H·h)·(c·prefix + c²/2) (each new token attends to the cache
    and, causally, to the new tokens before it) + 2·d·V·c. With ``prefix`` 0 it is
    :func:`forward_flops` of one row with logits everywhere."""
    body = 2 * dims.layer_params * dims.n_layers * tokens
    attention = 4 * dims.n_layers * dims.attn_width * (tokens * prefix + tokens * tokens / 2)
    return float(body + attention + 2 * dims.hidden * dims.vocab * tokens)


def backward_flops(
    dims: ModelDims,
    widths: Sequence[int],
    logit_rows: int,
    *,
    lowest_layer: int,
    weight_grads: bool,
) -> float:
    """The backward of :func:`forward_flops`' forward: activation gradients of layers
    ``lowest_layer``..L-1 (1× their matmuls, 2× their attention) and of the LM head, plus the
    weight gradients of all of them when ``weight_grads`` (1× the matmuls again)."""
    layers = dims.n_layers - lowest_layer
    per_pass = 2 if weight_grads else 1
    body = sum(2 * dims.layer_params * layers * t for t in widths) * per_pass
    attention = sum(2 * 2 * layers * t * t * dims.attn_width for t in widths)
    head = 2 * dims.hidden * dims.vocab * logit_rows * per_pass
    return float(body + attention + head)


def train_step_flops(
    dims: ModelDims,
    widths: Sequence[int],
    logit_rows: int,
    *,
    full: bool,
    lowest_layer: int = 0,
    adapter_params: int = 0,
) -> float:
    """Forward + backward of one micro-batch: a full fine-tune (weight gradients everywhere,
    down to layer 0) or LoRA (activation gradients down to ``lowest_layer``, plus 6 FLOPs per
    adapter parameter and token)."""
    fwd = forward_flops(dims, widths, logit_rows)
    if full:
        return fwd + backward_flops(dims, widths, logit_rows, lowest_layer=0, weight_grads=True)
    bwd = backward_flops(dims, widths, logit_rows, lowest_layer=lowest_layer, weight_grads=False)
    return fwd + bwd + 6.0 * adapter_params * sum(widths)


def generation_flops(
    dims: ModelDims, prompt_lengths: Sequence[int], steps: int, max_new_tokens: int
) -> float:
    """One generation batch: each prompt but its last token prefilled alone (logits of one
    position), then ``steps`` decode steps of one token per row, each attending over the whole
    static cache (widest prompt + 1 + ``max_new_tokens`` positions) with logits per row."""
    prefill = sum(forward_flops(dims, [n - 1], 1) for n in prompt_lengths if n > 1)
    cache = max(prompt_lengths) + 1 + max_new_tokens
    per_token = (
        2 * dims.layer_params * dims.n_layers
        + 4 * dims.n_layers * cache * dims.attn_width
        + 2 * dims.hidden * dims.vocab
    )
    return float(prefill + steps * len(prompt_lengths) * per_token)


def batched_generation_flops(
    dims: ModelDims,
    prompts: list,
    batch_size: int,
    pad_id: int,
    max_new_tokens: int,
    steps: Callable[[list[int]], int] | None = None,
) -> float:
    """:func:`generation_flops` of ``prompts`` (``Encoded``) in the batches ``generate_ids``
    makes; ``steps(indices)``: a batch's decode steps (default ``max_new_tokens``)."""
    from sumcircuit.data.batching import iter_batches

    flops = 0.0
    batches = iter_batches(prompts, batch_size, pad_id, by_length=True, padding_side="left")
    for idx, _ in batches:
        lengths = [len(prompts[i].input_ids) for i in idx]
        n_steps = max_new_tokens if steps is None else steps(idx)
        flops += generation_flops(dims, lengths, n_steps, max_new_tokens)
    return flops


def diff_metric_flops(dims: ModelDims, width: int, region_rows: int) -> float:
    """The diff's own work on one batch's ``region_rows`` query rows of padded ``width``: both
    models' attention rows (2·2·R·T·(H·h)) and the CKA moments (3·2·R·d²), per layer."""
    rows = 2 * 2 * region_rows * width * dims.attn_width
    cka = 3 * 2 * region_rows * dims.hidden * dims.hidden
    return float(dims.n_layers * (rows + cka))


# -- reading a run ------------------------------------------------------------------------------
@dataclass
class StageCount:
    """One stage's row: its FLOPs, time and what they were counted from."""

    stage: str
    flops: float | None
    seconds: float | None
    time_source: str  # "summary" (timings_s of the last invocation) or "marker" (stage.json)
    precision: str  # what the stage's matmuls ran in: fp32, bf16 or a torch dtype name
    counts: dict[str, Any] = field(default_factory=dict)  # tokens, batches, passes...
    note: str = ""

    @property
    def gflops_per_s(self) -> float | None:
        if not self.flops or not self.seconds:
            return None
        return self.flops / self.seconds / 1e9


class RunCounter:
    """Counts the FLOPs of a run's stages from their results and the data they read."""

    def __init__(self, run: Path, tokenizer: Any, dims: ModelDims) -> None:
        self.run, self.tokenizer, self.dims = run, tokenizer, dims
        self.pad = tokenizer.pad_token_id

    # data, encoded as the stage encoded it
    @lru_cache(maxsize=64)  # noqa: B019 - one counter per run, a handful of keys
    def _prepared(self, key: tuple) -> Any:
        from sumcircuit.data.batching import prepare

        options = dict(key)
        return prepare(options.pop("data"), options.pop("split"), self.tokenizer, **options)

    def prepared(self, config: dict[str, Any], **overrides: Any) -> Any:
        names = ("data", "split", "limit", "max_length", "template")
        options = {n: config[n] for n in names if n in config}
        for name in ("document_field", "summary_field"):
            if name in config:
                options[name] = config[name]
        options |= overrides
        return self._prepared(tuple(sorted(options.items())))

    def batches(self, encoded: list, batch_size: int) -> list[tuple[list[int], int, int]]:
        """``(indices, padded width, summary rows)`` of each batch ``iter_batches`` makes."""
        from sumcircuit.data.batching import iter_batches

        out = []
        for idx, batch in iter_batches(encoded, batch_size, self.pad):
            out.append((idx, int(batch.input_ids.shape[1]), int(batch.summary_mask.sum())))
        return out

    def forwards_over(self, encoded: list, batch_size: int) -> tuple[float, int, int]:
        """FLOPs of one forward of every batch (logits at summary rows), the batch count and
        the padded tokens."""
        flops, tokens = 0.0, 0
        batches = self.batches(encoded, batch_size)
        for idx, width, rows in batches:
            flops += forward_flops(self.dims, [width] * len(idx), rows)
            tokens += width * len(idx)
        return flops, len(batches), tokens

    def head_flops(self, encoded: list, batch_size: int) -> float:
        """The LM head's share of :meth:`forwards_over` (logits at summary rows)."""
        rows = sum(r for _, _, r in self.batches(encoded, batch_size))
        return float(2 * self.dims.hidden * self.dims.vocab * rows)

    # one function per stage kind
    def diff(self, folder: Path) -> tuple[float, dict[str, Any], str]:
        from sumcircuit.analysis.diff.result import DiffResult

        summary = DiffResult.load(folder).summary
        config = summary["provenance"]["config"]
        prepared = self.prepared(config)
        flops, tokens = 0.0, 0
        for idx, width, rows in self.batches(prepared.encoded, config["batch_size"]):
            flops += 2 * forward_flops(self.dims, [width] * len(idx), len(idx))
            flops += diff_metric_flops(self.dims, width, rows)
            tokens += width * len(idx)
        recorded = summary.get("timing", {}).get("forward_tokens_per_model")
        counts = {"padded_tokens_per_model": tokens, "recorded_tokens_per_model": recorded}
        return flops, counts, config.get("dtype", "float32")

    def attribute(self, folder: Path) -> tuple[float, dict[str, Any], str]:
        from sumcircuit.analysis.causal.attribute import AttributionResult

        result = AttributionResult.load(folder)
        config = result.provenance["config"]
        prepared = self.prepared(config)
        per_pass_fwd, per_pass_bwd, n_batches = 0.0, 0.0, 0
        for idx, width, rows in self.batches(prepared.encoded, config["batch_size"]):
            widths = [width] * len(idx)
            per_pass_fwd += forward_flops(self.dims, widths, rows)
            per_pass_bwd += backward_flops(
                self.dims, widths, rows, lowest_layer=0, weight_grads=False
            )
            n_batches += 1
        grad_passes = 2 if result.method == "atp" else config["ig_steps"]
        plain_passes = 0 if result.method == "atp" else 2
        expected = n_batches * (grad_passes + plain_passes)
        recorded = int(result.timing.get("passes", expected))
        scale = recorded / expected if expected else 1.0  # follow what the stage recorded
        flops = scale * (grad_passes * (per_pass_fwd + per_pass_bwd) + plain_passes * per_pass_fwd)
        note = "" if recorded == expected else f"passes {recorded} vs {expected} expected"
        counts = {"batches": n_batches, "passes": recorded}
        return flops, counts | ({"note": note} if note else {}), config.get("dtype", "float32")

    def patching(self, folder: Path, kind: str) -> tuple[float, dict[str, Any], str]:
        """exact, faithfulness, validate: recorded forwards over the batches they patched."""
        if kind == "faithfulness":
            from sumcircuit.analysis.causal.faithfulness_result import FaithfulnessResult

            result: Any = FaithfulnessResult.load(folder)
            config = result.provenance["config"]
            skip = int(result.documents.get("scoring", {}).get("excluded", 0))
            encoded = self.prepared(config).encoded[skip:]  # the selection documents come first
        else:
            if kind == "exact":
                from sumcircuit.analysis.causal.exact import ExactResult as Result
            else:
                from sumcircuit.analysis.causal.validate import ValidateResult as Result
            result = Result.load(folder)
            config = result.provenance["config"]
            encoded = self.prepared(config).encoded
        per_sweep, n_batches, tokens = self.forwards_over(encoded, config["batch_size"])
        heads = self.head_flops(encoded, config["batch_size"])
        forwards = int(result.timing["forwards"])
        # the blocks the forwards ran: not those below a set's lowest patched layer, nor a
        # patched layer node's own (recorded as layer_forwards_skipped; older results ran all)
        ran = result.timing.get("layer_forwards", forwards * self.dims.n_layers)
        share = ran / (forwards * self.dims.n_layers) if forwards else 1.0
        flops = ((per_sweep - heads) * share + heads) * forwards / n_batches
        counts = {"documents": len(encoded), "batches": n_batches, "forwards": forwards}
        counts |= {"share_of_blocks_run": share, "padded_tokens_per_sweep": tokens}
        return flops, counts, config.get("dtype", "float32")

    def training(self, folder: Path) -> tuple[float, dict[str, Any], str]:
        from sumcircuit.models.trained import TrainingResult
        from sumcircuit.training.order import epoch_batches, micro_batches

        result = TrainingResult.load(folder)
        config = result.config
        full = config["method"] == "full"
        layers = [int(m) for m in re.findall(r"layers\.(\d+)\.", " ".join(result.adapted_modules))]
        lowest = min(layers) if layers else 0
        adapter = 0 if full else result.trainable_params
        train = self.prepared(config, split="train")
        lengths = [len(e.input_ids) for e in train.encoded]
        global_batch = config["batch_size"] * config.get("grad_accum", 1)
        steps_per_epoch = math.ceil(len(lengths) / global_batch)
        steps_done = len(result.step_losses)
        flops, tokens, step = 0.0, 0, 0
        epoch = 0
        while step < steps_done:
            for batch in epoch_batches(lengths, global_batch, config["seed"], epoch):
                if step == steps_done:
                    break
                micro = micro_batches(
                    batch, config["batch_size"], 1, 0, config.get("grad_accum", 1)
                )
                for chunk in filter(None, micro):
                    width = max(lengths[i] for i in chunk)
                    rows = sum(train.encoded[i].n_summary_tokens for i in chunk)
                    flops += train_step_flops(
                        self.dims,
                        [width] * len(chunk),
                        rows,
                        full=full,
                        lowest_layer=lowest,
                        adapter_params=adapter,
                    )
                    tokens += width * len(chunk)
                step += 1
            epoch += 1
        # validations: one before training, then one per distinct curve step and epoch end
        validated = {p.step for p in result.curve if p.step > 0}
        validated |= {steps_per_epoch * (e + 1) for e in range(len(result.epochs))}
        val_flops, n_val = 0.0, 0
        if config.get("val_limit"):
            val = self.prepared(config, split="validation", limit=config["val_limit"])
            per_val, _, _ = self.forwards_over(val.encoded, config["batch_size"])
            # the loss before training is not measured where the run read it from the cache
            n_val = len(validated) + (0 if result.val_loss_start_from else 1)
            # after the first, a validation resumes at the lowest adapted block (the frozen
            # blocks below it were recorded): only the blocks from there and the head run
            head = self.head_flops(val.encoded, config["batch_size"])
            share = 1.0 if full else (self.dims.n_layers - lowest) / self.dims.n_layers
            if n_val:
                val_flops = per_val + (n_val - 1) * ((per_val - head) * share + head)
        rouge_flops, n_rouge = 0.0, 0
        if config.get("rouge_every_epoch"):
            prompts = self.prepared(
                config,
                split="validation",
                limit=config["rouge_every_epoch"],
                with_summary=False,
                reserve=TRAIN_ROUGE_TOKENS,
            )
            per_rouge = self.generation(prompts.encoded, TRAIN_ROUGE_BATCH, TRAIN_ROUGE_TOKENS)
            n_rouge = len(validated)
            rouge_flops = per_rouge * n_rouge
        counts = {
            "steps": steps_done,
            "padded_train_tokens": tokens,
            "lowest_layer_with_gradients": 0 if full else lowest,
            "validation_losses": n_val,
            "rouge_validations": n_rouge,
            "train_flops": flops,
            "validation_flops": val_flops,
            "rouge_generation_flops_upper_bound": rouge_flops,
        }
        return flops + val_flops + rouge_flops, counts, result.precision_used or "fp32"

    def generation(
        self, prompts: list, batch_size: int, max_new: int, steps: Callable | None = None
    ) -> float:
        return batched_generation_flops(self.dims, prompts, batch_size, self.pad, max_new, steps)

    def evaluate(self, folder: Path) -> tuple[float, dict[str, Any], str]:
        from sumcircuit.evaluation.evaluate import EvalResult
        from sumcircuit.evaluation.loglik import teacher_forced

        result = EvalResult.load(folder)
        config = result.provenance["config"]
        gen = result.generation
        max_new = int(gen.get("max_new_tokens", config.get("max_new_tokens")))
        prompts = self.prepared(config, with_summary=False, reserve=max_new)
        by_id = dict(zip(result.predictions["id"], result.predictions["prediction"], strict=True))
        generated = [
            len(self.tokenizer(by_id.get(i, "") or "", add_special_tokens=False).input_ids)
            for i in prompts.ids
        ]

        def steps(idx: list[int]) -> int:  # the longest summary + its end token, at most max_new
            return min(max_new, max(generated[i] for i in idx) + 1)

        batch_size = int(gen.get("batch_size", config.get("batch_size")))
        generated_any = config.get("generate", True)
        # without generation only the one prefill of each prompt runs (0 decode steps)
        gen_flops = self.generation(
            prompts.encoded, batch_size, max_new, steps if generated_any else (lambda idx: 0)
        )
        ll_flops = 0.0
        if result.loglik is not None:
            # the reference continues its prompt's prefill: the last prompt token and the
            # reference but its last token, attending over the prompt's cache
            encoded = teacher_forced(
                prompts,
                self.tokenizer,
                template=config["template"],
                max_length=config["max_length"],
            )
            ll_flops = sum(
                continuation_flops(
                    self.dims, e.summary_start - 1, len(e.input_ids) - e.summary_start
                )
                for e in encoded
            )
        counts = {
            "documents": len(prompts.encoded),
            "prompt_tokens": sum(len(p.input_ids) for p in prompts.encoded),
            "generated_tokens_retokenized": sum(generated),
            "generation_flops": gen_flops,
            "loglik_flops": ll_flops,
            # the log-likelihood times itself: the rest of the stage is generation, ROUGE, loading
            "loglik_s": None if result.loglik is None else result.loglik.get("wall_s"),
            "stage_wall_s": result.wall_s,
        }
        return gen_flops + ll_flops, counts, "bf16" if gen.get("bf16") else "fp32"

    def count(self, stage: str) -> tuple[float | None, dict[str, Any], str]:
        """FLOPs, counts and precision of stage ``stage`` (None: no model work)."""
        from sumcircuit.layout import RunLayout as L

        folder = self.run / stage
        kind = L.kind(stage)
        if kind in (L.FINETUNE, L.LORA):
            return self.training(folder)
        if kind == L.DIFF:
            return self.diff(folder)
        if kind == L.ATTRIBUTE:
            return self.attribute(folder)
        if kind in (L.EXACT, L.FAITHFULNESS, L.VALIDATE):
            return self.patching(folder, kind)
        if kind == L.EVALUATE:
            return self.evaluate(folder)
        return None, {}, "-"


def stage_times(run: Path) -> dict[str, tuple[float, str]]:
    """Seconds per stage: ``summary.json``'s ``timings_s``, else the stage marker's ``wall_s``
    (a stage the last invocation skipped)."""
    from sumcircuit.io import read_json
    from sumcircuit.layout import RunLayout
    from sumcircuit.manifest import MARKER

    layout = RunLayout(run)
    if not layout.summary_file.is_file():
        raise SumcircuitError(
            f"{str(run)!r} has no {RunLayout.SUMMARY_FILE}; give a finished `sumcircuit run` "
            "directory"
        )
    timings = read_json(layout.summary_file).get("timings_s") or {}
    times = {k: (float(v), "summary") for k, v in timings.items() if k != "skipped"}
    for marker in sorted(run.rglob(MARKER)):
        stage = layout.relative(marker.parent)
        wall = read_json(marker).get("wall_s")
        if stage not in times and wall is not None:
            times[stage] = (float(wall), "marker")
    return times


def count_run(run: Path) -> tuple[list[StageCount], ModelDims, dict[str, Any]]:
    """Every timed stage of ``run`` with its FLOPs; the model's sizes; the study config."""
    from sumcircuit.io import read_json
    from sumcircuit.layout import RunLayout
    from sumcircuit.models.loader import load_tokenizer

    layout = RunLayout(run)
    study = read_json(layout.study_file)
    config = study.get("config", study)
    model = config["model"]
    dims = ModelDims.from_config(_model_config(model))
    counter = RunCounter(run, load_tokenizer(model), dims)
    rows = []
    for stage, (seconds, source) in sorted(stage_times(run).items()):
        try:
            flops, counts, precision = counter.count(stage)
            note = counts.pop("note", "")
        except SumcircuitError as err:  # a result this version cannot read: say so, go on
            flops, counts, precision, note = None, {}, "?", str(err).splitlines()[0]
        if flops is None and not note:
            continue  # locate, report: no model work
        rows.append(StageCount(stage, flops, seconds, source, precision, counts, note))
    return rows, dims, config


def _model_config(name: str) -> Any:
    """The transformers config of a preset (its cached copy), a directory or a hub id."""
    from transformers import AutoConfig

    from sumcircuit.models.loader import cached_model
    from sumcircuit.models.registry import Preset, resolve

    source = resolve(name)
    return AutoConfig.from_pretrained(
        str(cached_model(name) if isinstance(source, Preset) else source)
    )


# -- the measured peak --------------------------------------------------------------------------
def peak_shapes(dims: ModelDims, rows: int) -> dict[str, tuple[int, int, int]]:
    """(M, K, N) of the model's own matmuls: attention projection, MLP up and down, LM head."""
    d, f = dims.hidden, dims.d_ff
    return {
        f"({rows}x{d})@({d}x{d})": (rows, d, d),
        f"({rows}x{d})@({d}x{f})": (rows, d, f),
        f"({rows}x{f})@({f}x{d})": (rows, f, d),
        f"({HEAD_ROWS}x{d})@({d}x{dims.vocab})": (HEAD_ROWS, d, dims.vocab),
    }


def matmul_rate(
    m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, repeats: int
) -> float:
    """Median GFLOP/s of (m × k) @ (k × n) over ``repeats`` timings of ≥ 0.1 s each."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.05:  # calls per timing: about 0.1 s
        a @ b
        calls += 1
    sync()
    calls = max(1, 2 * calls)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            a @ b
        sync()
        rates.append(2 * m * k * n * calls / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def measure_peaks(
    dims: ModelDims, rows: int, device: torch.device, repeats: int
) -> dict[str, dict[str, Any]]:
    """Per precision: every shape's GFLOP/s and the peak (the fastest)."""
    precisions = {"fp32": torch.float32}
    if bf16_supported(device):
        precisions["bf16"] = torch.bfloat16
    out = {}
    for name, dtype in precisions.items():
        shapes = {
            label: matmul_rate(m, k, n, dtype, device, repeats)
            for label, (m, k, n) in peak_shapes(dims, rows).items()
        }
        out[name] = {"shapes_gflops": shapes, "peak_gflops": max(shapes.values())}
    return out


def hardware(device: torch.device) -> dict[str, Any]:
    """The device's name and the flags that decide matmul speed."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        return info
    name, flags = "unknown CPU", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    info["name"] = name
    info["flags"] = [f for f in wanted if f in flags]
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["onednn_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    info["threads"] = torch.get_num_threads()
    info["cores"] = os.cpu_count()
    return info


# -- output -------------------------------------------------------------------------------------
def evaluate_split(row: StageCount) -> dict[str, float] | None:
    """An evaluate stage's rates: the log-likelihood forwards over their own recorded time, and
    generation over the rest of the stage's time; None for other stages."""
    c = row.counts
    if not c.get("loglik_s") or not row.seconds or row.seconds <= c["loglik_s"]:
        return None
    return {
        "loglik_gflops_per_s": c["loglik_flops"] / c["loglik_s"] / 1e9,
        "rest_gflops_per_s": c["generation_flops"] / (row.seconds - c["loglik_s"]) / 1e9,
    }


def _g(x: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def _gflop_format(flops: float | None) -> str:
    """Whole GFLOP for real models, three significant digits for tiny ones."""
    return "{:,.0f}" if flops is None or flops >= 1e11 else "{:.3g}"


def table(rows: list[StageCount], peaks: dict[str, dict[str, Any]]) -> str:
    """The markdown table: stage, FLOPs, seconds, GFLOP/s, % of each measured peak."""
    names = list(peaks)
    head = ["stage", "ran in", "GFLOP", "seconds", "GFLOP/s", *(f"% of {p} peak" for p in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rate = r.gflops_per_s
        fractions = [
            _g(None if rate is None else 100 * rate / peaks[p]["peak_gflops"]) for p in names
        ]
        seconds = _g(r.seconds) + ("*" if r.time_source == "marker" else "")
        flops = _g(None if r.flops is None else r.flops / 1e9, _gflop_format(r.flops))
        cells = [r.stage, r.precision, flops, seconds, _g(rate), *fractions]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished `sumcircuit run` directory")
    parser.add_argument("--out", help="write the numbers as JSON to this file")
    parser.add_argument(
        "--device", default=None, help="where to measure the peak (default: cuda if available)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per matmul shape")
    args = parser.parse_args(argv)
    run = Path(args.run)
    if not run.is_dir():
        parser.error(f"--run {args.run!r} is not a directory; give a `sumcircuit run` --out")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        rows, dims, config = count_run(run)
    except SumcircuitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    batch = max(config.get("lora", {}).get("batch_size", 4), 1)
    peak_rows = batch * int(config.get("max_length", 256))
    peaks = measure_peaks(dims, peak_rows, device, args.repeats)
    hw = hardware(device)
    print(f"run {run} (model {config.get('model')}: {asdict(dims)})")
    print(
        f"device: {hw['name']} [{', '.join(hw.get('flags', []))}], torch threads "
        f"{hw.get('threads', '-')}, torch {hw['torch']}"
    )
    for name, peak in peaks.items():
        shapes = ", ".join(f"{k} {v:.0f}" for k, v in peak["shapes_gflops"].items())
        print(f"{name} matmul GFLOP/s: {shapes}; peak {peak['peak_gflops']:.0f}")
    print()
    print(table(rows, peaks))
    if any(r.time_source == "marker" for r in rows):
        print("\n* skipped by the last invocation: the time its stage.json recorded when it ran")
    for r in rows:
        if r.note:
            print(f"note, {r.stage}: {r.note}")
        split = evaluate_split(r)
        if split:
            print(
                f"{r.stage}: log-likelihood forwards {split['loglik_gflops_per_s']:.1f} GFLOP/s "
                f"(their own timing); the rest (generation, ROUGE, loading) "
                f"{split['rest_gflops_per_s']:.1f} GFLOP/s"
            )
    if args.out:
        from sumcircuit.io import write_json

        write_json(
            args.out,
            {
                "run": str(run),
                "model": config.get("model"),
                "dims": asdict(dims),
                "hardware": hw,
                "peaks": peaks,
                "stages": [
                    asdict(r)
                    | {
                        "gflops_per_s": r.gflops_per_s,
                        "evaluate_split": evaluate_split(r),
                        **{
                            f"fraction_of_{p}_peak": (
                                None
                                if r.gflops_per_s is None
                                else r.gflops_per_s / peaks[p]["peak_gflops"]
                            )
                            for p in peaks
                        },
                    }
                    for r in rows
                ],
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
