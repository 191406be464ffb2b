"""The matrices an adaptation score is computed on: the LoRA target matrices of every layer.

The same look-up as the LoRA arms (:meth:`~sumcircuit.models.archs.Arch.lora_targets`, targets
q/k/v/o by default), so a layer's score covers exactly the matrices LoRA on that layer adapts
(GPT-2's fused ``c_attn`` once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from sumcircuit.models.archs import Arch


@dataclass(frozen=True)
class Target:
    """One adapted matrix: its module's full name, its layer, and its kind (the name inside
    the block, e.g. ``self_attn.q_proj``: the same matrix of another layer has the same kind)."""

    module: str
    layer: int
    kind: str


def lora_matrices(arch: Arch, targets: tuple[str, ...]) -> list[Target]:
    """Every layer's LoRA target matrices for ``targets``, layer by layer."""
    found = []
    for layer in range(arch.n_layers):
        prefix = arch.block_name(layer) + "."
        for module in arch.lora_targets([layer], targets):
            found.append(Target(module, layer, module.removeprefix(prefix)))
    return found


def weights(model: nn.Module, matrices: list[Target]) -> list[nn.Parameter]:
    """The weight of each target module (Linear ``(out, in)``, GPT-2 Conv1D ``(in, out)``)."""
    return [model.get_submodule(t.module).weight for t in matrices]


def per_layer(values: np.ndarray, matrices: list[Target], n_layers: int) -> np.ndarray:
    """``(n_layers,)`` sums of the per-matrix ``values`` (M,) over each layer's matrices."""
    total = np.zeros(n_layers, dtype=np.float64)
    np.add.at(total, [t.layer for t in matrices], np.asarray(values, dtype=np.float64))
    return total
