"""The precision a training run uses: ``auto`` picks bf16 only where bf16 matmuls are fast."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

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
