"""Relative weight change ‖W_ft − W_base‖_F / ‖W_base‖_F per parameter, layer and head.

- per parameter: every named parameter of the model (embeddings, norms, projections, MLP);
- per layer: all parameters of block l together (one concatenated vector);
- per head: the head's slices of q, k, v and o together, from ``Arch.head_weight``. With
  grouped-query attention the k and v slices are those of the head's KV group
  (``kv_head = h // (n_heads / n_kv_heads)``), shared by the group's query heads: the per-head
  table reports q and o per query head and k and v per KV head, with the ``kv_head`` column.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from sumcircuit.metrics.representation import relative_weight_change
from sumcircuit.models.archs import Arch

__all__ = ["head_weight_changes", "layer_weight_changes", "parameter_weight_changes"]

PROJECTIONS = ("q", "k", "v", "o")


def _change(w_base: torch.Tensor, w_ft: torch.Tensor) -> float:
    """Relative change, NaN where the base weight is all zeros (undefined)."""
    if torch.count_nonzero(w_base).item() == 0:
        return math.nan
    return relative_weight_change(w_base, w_ft)


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def head_weight_changes(base: nn.Module, ft: nn.Module, arch: Arch) -> pd.DataFrame:
    """One row per (layer, head): ``layer, head, kv_head, q, k, v, o, combined``.

    ``combined`` is the relative change of the concatenation of the four slices; k and v are
    the KV group's slices (see the module docstring).
    """
    rows = []
    for layer in range(arch.n_layers):
        for head in range(arch.n_heads):
            pairs = {
                p: (arch.head_weight(base, layer, p, head), arch.head_weight(ft, layer, p, head))
                for p in PROJECTIONS
            }
            row = {"layer": layer, "head": head, "kv_head": arch.kv_group(head)}
            row |= {p: _change(b, f) for p, (b, f) in pairs.items()}
            row["combined"] = _change(
                _flat([b for b, _ in pairs.values()]), _flat([f for _, f in pairs.values()])
            )
            rows.append(row)
    return pd.DataFrame(rows)


def layer_weight_changes(base: nn.Module, ft: nn.Module, arch: Arch) -> list[float]:
    """Relative change of all parameters of each block, concatenated: (n_layers,)."""
    out = []
    for layer in range(arch.n_layers):
        name = arch.block_name(layer)
        b = [p for _, p in base.get_submodule(name).named_parameters()]
        f = [p for _, p in ft.get_submodule(name).named_parameters()]
        out.append(_change(_flat(b), _flat(f)))
    return out


def parameter_weight_changes(base: nn.Module, ft: nn.Module) -> pd.DataFrame:
    """One row per named parameter: ``parameter, weight_change`` (all-zero bases skipped: their
    relative change is undefined)."""
    ft_params = dict(ft.named_parameters())
    rows = []
    for name, weight in base.named_parameters():
        if torch.count_nonzero(weight).item() == 0:
            continue
        rows.append(
            {"parameter": name, "weight_change": relative_weight_change(weight, ft_params[name])}
        )
    return pd.DataFrame(rows, columns=["parameter", "weight_change"])
