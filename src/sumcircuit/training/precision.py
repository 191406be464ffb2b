"""The precision a training run uses: ``auto`` picks bf16 only where bf16 matmuls are fast."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from sumcircuit.training.config import FinetuneConfig


def resolved_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` where bf16 matmuls are fast (CUDA with bf16, CPU with oneDNN bf16),
    else ``fp32``; ``bf16``/``fp32`` are kept."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def autocast(config: FinetuneConfig, device: torch.device) -> Any:
    """bf16 autocast of matmuls when the resolved precision is bf16, or nothing."""
    if resolved_precision(config.precision, device) == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextmanager
def bf16_weights(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """While open, every float32 matmul weight of ``model`` (``nn.Linear``, GPT-2's ``Conv1D``)
    is a bf16 copy, the float32 originals put back on exit; for work under bf16 autocast where no
    weight changes (validation). Yields how many.

    Why: bf16 autocast casts a weight at every call and caches the cast only for a weight that
    requires grad, within one autocast region — so in greedy decoding, where each step is a thin
    matmul, the casts of a frozen base (LoRA) take a large share of the step. The copy is the
    rounding the cast makes, so every result is bit for bit the same (a test pins it). Open it
    only where every matmul runs under bf16 autocast: an op outside autocast would meet a bf16
    weight. A tied LM head gets its own copy; the tie is restored on exit. Nothing happens when
    ``enabled`` is false.
    """
    swapped: list[tuple[nn.Module, nn.Parameter]] = []
    if enabled:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if (
                isinstance(module, nn.Linear | Conv1D)
                and isinstance(weight, nn.Parameter)
                and weight.dtype == torch.float32
            ):
                swapped.append((module, weight))
                module.weight = nn.Parameter(weight.detach().to(torch.bfloat16), False)
    try:
        yield len(swapped)
    finally:
        for module, weight in swapped:
            module.weight = weight
