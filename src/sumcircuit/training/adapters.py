"""LoRA adapters on chosen layers or heads, built with peft, and exact trainable-parameter counts.

peft adapts whole modules. To restrict an adapter to some heads, the LoRA factors are masked:

- q/k/v: rows of ``lora_B`` (the module's output features) outside the heads' slices. For
  grouped-query models the k/v slice is the slice of the KV head the query head reads
  (``Arch.head_slices``), so a head-level adapter on k/v changes the whole KV group's keys/values;
- o: columns of ``lora_A`` (the output projection's input features) outside the heads' slices;
- GPT-2's fused ``c_attn`` gets the union of its q, k and v head slices on its output rows.

Masked entries are zeroed at init and their gradients are multiplied by the mask (tensor hooks
held in ``masked_gradients``), so they stay exactly zero under AdamW (zero gradient → zero moment
→ zero update; decoupled weight decay keeps zeros zero). ``trainable_params`` counts only the
entries that can change. A saved adapter is already zero outside the masks, so a plain
``PeftModel.from_pretrained`` reproduces it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch

ADAPTER = "default"


@dataclass(frozen=True)
class HeadMask:
    """Which entries of one module's LoRA factor may be non-zero."""

    module: str  # full module name in the base model
    factor: Literal["A", "B"]  # "B": rows of lora_B (out features); "A": columns of lora_A (in)
    size: int  # length of the masked axis
    keep: tuple[tuple[int, int], ...]  # [start, stop) ranges that stay trainable

    def vector(self) -> torch.Tensor:
        """The ``(size,)`` 0/1 float mask."""
        mask = torch.zeros(self.size)
        for start, stop in self.keep:
            mask[start:stop] = 1.0
        return mask

    def shaped(self, weight: torch.Tensor) -> torch.Tensor:
        """The mask broadcast to ``weight``: B is (out, r) → (out, 1); A is (r, in) → (1, in)."""
        vec = self.vector().to(weight.device, weight.dtype)
        return vec[:, None] if self.factor == "B" else vec[None, :]

    @property
    def n_kept(self) -> int:
        return sum(stop - start for start, stop in self.keep)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadMask:
        return cls(
            module=data["module"],
            factor=data["factor"],
            size=int(data["size"]),
            keep=tuple((int(a), int(b)) for a, b in data["keep"]),
        )


def _features(module: nn.Module, arch: Arch) -> tuple[int, int]:
    """``(in_features, out_features)`` of a Linear or (GPT-2) Conv1D module."""
    out_f, in_f = module.weight.shape
    return (out_f, in_f) if arch.spec.weight_in_out else (in_f, out_f)


def head_masks(
    model: nn.Module, arch: Arch, heads: list[tuple[int, int]], targets: tuple[str, ...]
) -> list[HeadMask]:
    """One mask per adapted module for LoRA restricted to ``heads`` (``(layer, head)`` pairs)."""
    keep: dict[str, set[tuple[int, int]]] = {}
    factor: dict[str, Literal["A", "B"]] = {}
    for layer, head in heads:
        arch.check_layer(layer)
        for which in targets:
            name = arch.proj_name(layer, which)  # type: ignore[arg-type]
            factor[name] = "A" if which == "o" else "B"
            keep.setdefault(name, set()).update(
                (s.start, s.stop)
                for s in arch.head_slices(which, head)  # type: ignore[arg-type]
            )
    masks = []
    for name, ranges in keep.items():
        in_f, out_f = _features(model.get_submodule(name), arch)
        size = in_f if factor[name] == "A" else out_f
        masks.append(HeadMask(name, factor[name], size, tuple(sorted(ranges))))
    return masks


def lora_entries(
    model: nn.Module, arch: Arch, modules: list[str], rank: int, masks: list[HeadMask] = ()
) -> int:
    """Exact number of LoRA entries that can change: r·(in + out) per module, with a masked
    factor counting only its kept rows/columns."""
    by_module = {m.module: m for m in masks}
    total = 0
    for name in modules:
        in_f, out_f = _features(model.get_submodule(name), arch)
        mask = by_module.get(name)
        if mask is not None and mask.factor == "A":
            in_f = mask.n_kept
        elif mask is not None:
            out_f = mask.n_kept
        total += rank * (in_f + out_f)
    return total


def equal_budget_rank(
    model: nn.Module,
    arch: Arch,
    modules: list[str],
    masks: list[HeadMask],
    rank: int,
    targets: tuple[str, ...],
) -> tuple[int, dict[str, int]]:
    """rank_eq = round(rank · n_all / n_targeted), n = trainable entries at ``rank`` (entries are
    linear in the rank), with the exact counts of both arms."""
    all_modules = arch.lora_targets(list(range(arch.n_layers)), targets)
    n_all = lora_entries(model, arch, all_modules, rank)
    n_targeted = lora_entries(model, arch, modules, rank, masks)
    rank_eq = max(1, round(rank * n_all / n_targeted))
    counts = {
        "rank": rank,
        "standard_params": n_all,
        "targeted_params_at_rank": n_targeted,
        "equal_budget_rank": rank_eq,
        "targeted_params": lora_entries(model, arch, modules, rank_eq, masks),
    }
    return rank_eq, counts


def reallocated_ranks(n_layers: int, layers: list[int], rank: int, low: int) -> dict[int, int]:
    """CircuitLoRA's reallocation: every layer at rank ``low``, ``layers`` higher, the ranks
    summing to ``rank · n_layers`` (standard LoRA's) exactly. Returns the rank of each of
    ``layers``: the budget left after ``low`` on the others, split evenly, the first layers
    taking one more where it does not divide. Layers of one model have equal LoRA modules, so
    equal rank sums mean equal trainable parameters."""
    if not layers or len(layers) >= n_layers:
        raise SumcircuitError(
            f"rank reallocation needs a circuit of 1 to {n_layers - 1} layers, got {len(layers)}"
        )
    if not 1 <= low < rank:
        raise SumcircuitError(f"the lower rank must lie in 1..{rank - 1}, got {low}")
    budget = rank * n_layers - low * (n_layers - len(layers))
    share, extra = divmod(budget, len(layers))
    return {layer: share + (i < extra) for i, layer in enumerate(sorted(layers))}


def layer_rank_pattern(
    arch: Arch, layer_ranks: dict[int, int], targets: tuple[str, ...], rank: int, alpha: float
) -> tuple[dict[str, int], dict[str, float]]:
    """peft's ``rank_pattern`` and ``alpha_pattern`` for per-layer ranks: each module of a layer
    in ``layer_ranks`` at that rank, its alpha scaled so that alpha/rank stays ``alpha / rank``."""
    ranks: dict[str, int] = {}
    alphas: dict[str, float] = {}
    for layer, r in layer_ranks.items():
        for name in arch.lora_targets([layer], targets):
            ranks[name], alphas[name] = r, alpha * r / rank
    return ranks, alphas


def add_lora(
    model: nn.Module,
    arch: Arch,
    modules: list[str],
    *,
    rank: int,
    alpha: float,
    dropout: float,
    seed: int,
    masks: list[HeadMask] = (),
    rank_pattern: dict[str, int] | None = None,
    alpha_pattern: dict[str, float] | None = None,
) -> PeftModel:
    """Wrap ``model`` with LoRA on exactly ``modules`` (full names) and zero masked entries;
    ``rank_pattern``/``alpha_pattern`` (full module names) override the rank and alpha of some."""
    if not modules:
        raise SumcircuitError("no module selected for LoRA; check --layers/--heads/--targets")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(modules),
        fan_in_fan_out=arch.spec.weight_in_out,
        bias="none",
        rank_pattern=dict(rank_pattern or {}),
        alpha_pattern=dict(alpha_pattern or {}),
    )
    torch.manual_seed(seed)  # adapter init is part of the run's seed
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for mask, weight in _masked_weights(peft_model, masks):
            weight.mul_(mask.shaped(weight))
    return peft_model


def _masked_weights(
    peft_model: PeftModel, masks: list[HeadMask]
) -> Iterator[tuple[HeadMask, nn.Parameter]]:
    base = peft_model.get_base_model()
    for mask in masks:
        layer = base.get_submodule(mask.module)
        factor = layer.lora_A if mask.factor == "A" else layer.lora_B
        yield mask, factor[ADAPTER].weight


@contextmanager
def masked_gradients(peft_model: PeftModel, masks: list[HeadMask]) -> Iterator[None]:
    """Multiply the gradients of masked LoRA factors by their masks while the block runs."""
    handles = []
    try:
        for mask, weight in _masked_weights(peft_model, masks):
            shaped = mask.shaped(weight)
            handles.append(weight.register_hook(lambda grad, m=shaped: grad * m))
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_trainable(model: nn.Module, masks: list[HeadMask] = ()) -> int:
    """Entries of trainable parameters that can change (masked LoRA entries excluded)."""
    masked = {}
    if masks and isinstance(model, PeftModel):
        masked = {
            id(w): int(m.shaped(w).expand_as(w).sum()) for m, w in _masked_weights(model, masks)
        }
    return sum(masked.get(id(p), p.numel()) for p in model.parameters() if p.requires_grad)
