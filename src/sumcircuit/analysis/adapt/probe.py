"""A short all-layer LoRA probe: train LoRA on every layer for a few steps, then ask where it
moved the model.

The probe is an ordinary ``sumcircuit finetune --method lora`` run (the arm's rank, alpha,
targets and lr; :meth:`~sumcircuit.analysis.adapt.config.AdaptConfig.probe_config`) on the
first ``probe_steps × batch_size`` train pairs, written into the adapt stage's own folder. Per
target matrix, with ΔW = s·B·A its trained update (s = alpha / rank, the LoRA scaling):

- ``probe_norm`` = ‖ΔW‖_F = s·‖B·A‖_F (B is zero at init, so any positive value was learned);
- ``probe_act`` = mean over the probe's training tokens (every non-padding position) of
  ‖ΔW·x‖², x the matrix's input in the adapted model — LoRA-drop's importance (Zhou et al.,
  COLING 2025): how much the update changes what the layer computes on the task's inputs.

A layer's score is the sum over its matrices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sumcircuit.analysis.adapt.config import AdaptConfig
from sumcircuit.analysis.adapt.targets import Target
from sumcircuit.data.batching import iter_batches, prepare_for
from sumcircuit.data.prompting import Batch
from sumcircuit.models.hooks import hooks
from sumcircuit.models.trained import load_trained
from sumcircuit.training.adapters import ADAPTER
from sumcircuit.training.loop import finetune
from sumcircuit.training.loss import body_and_head, unwrapped


@dataclass
class ProbeScores:
    """Per target matrix (M,): ``norm`` and ``act`` (see the module docstring); the probe's
    ``steps`` and per-step training ``losses``, the tokens ``act`` averaged over and the
    training pairs it read (``doc_ids``, of the split ``data_identity`` names)."""

    norm: np.ndarray
    act: np.ndarray
    steps: int
    losses: list[float]
    n_tokens: int
    doc_ids: list[str]
    data_identity: dict[str, Any]


def lora_layer(model: nn.Module, module: str) -> nn.Module:
    """The peft LoRA layer that wraps base-model module ``module``."""
    base = unwrapped(model)
    return base.get_submodule(module)


def delta_weight(layer: nn.Module) -> torch.Tensor:
    """ΔW = s·B·A of a peft LoRA layer, ``(out, in)`` in the adapter's frame, float64."""
    a = layer.lora_A[ADAPTER].weight.detach().double()  # (r, in)
    b = layer.lora_B[ADAPTER].weight.detach().double()  # (out, r)
    return layer.scaling[ADAPTER] * (b @ a)


def delta_norms(model: nn.Module, matrices: list[Target]) -> np.ndarray:
    """``(M,)``: ‖ΔW‖_F of each target matrix's trained update."""
    return np.array([float(delta_weight(lora_layer(model, t.module)).norm()) for t in matrices])


def delta_activations(
    model: nn.Module, matrices: list[Target], batches: Iterable[Batch], *, progress: bool = True
) -> tuple[np.ndarray, int]:
    """``(M,)`` mean over the real tokens of ``batches`` of ‖ΔW·x‖² at each target matrix, and
    the number of tokens. Only the decoder body runs (no LM head)."""
    body, _, _ = body_and_head(model)
    device = next(model.parameters()).device
    sums = torch.zeros(len(matrices), dtype=torch.float64)
    mask: dict[str, torch.Tensor] = {}

    def hook(i: int, layer: nn.Module) -> Any:
        def add(module: nn.Module, args: tuple, output: Any) -> None:
            x = args[0].to(layer.lora_A[ADAPTER].weight.dtype)  # (B, T, in)
            delta = layer.lora_B[ADAPTER](layer.lora_A[ADAPTER](x)) * layer.scaling[ADAPTER]
            per_token = delta.double().pow(2).sum(-1)  # (B, T)
            sums[i] += (per_token * mask["real"]).sum().cpu()

        return add

    table = {t.module: hook(i, lora_layer(model, t.module)) for i, t in enumerate(matrices)}
    base = unwrapped(model)
    n_tokens = 0
    model.eval()
    with torch.no_grad(), hooks(base, forward=table):
        for batch in tqdm(batches, desc="probe activations", disable=not progress):
            batch = batch.to(device)
            mask["real"] = batch.attention_mask.double()
            n_tokens += int(batch.attention_mask.sum())
            body(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    return (sums / max(n_tokens, 1)).numpy(), n_tokens


def run_probe(config: AdaptConfig, out: Path, matrices: list[Target]) -> ProbeScores:
    """Train the probe into ``out`` (a finished identical probe there is reused) and score it."""
    training = finetune(config.probe_config(str(out)))
    loaded = load_trained(config.model, out, device=config.device)
    train = prepare_for(config, loaded.tokenizer, split="train", limit=config.probe_pairs)
    batches = [
        b for _, b in iter_batches(train.encoded, config.batch_size, loaded.tokenizer.pad_token_id)
    ]
    act, n_tokens = delta_activations(loaded.model, matrices, batches, progress=config.progress)
    return ProbeScores(
        norm=delta_norms(loaded.model, matrices),
        act=act,
        steps=len(training.step_losses),
        losses=list(training.step_losses),
        n_tokens=n_tokens,
        doc_ids=list(train.ids),
        data_identity=train.data_identity,
    )
