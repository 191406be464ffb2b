"""Which weights an arm trains: LoRA on the chosen layers or heads, or every weight.

:func:`select_adapters` reads the arm from the config — ``--layers``, ``--heads`` or a saved
circuit (layer- or head-level), LoRA targets from the architecture table, an equal parameter
budget if asked — wraps the model with LoRA (head masks for a per-head adapter) or unfreezes
everything for full fine-tuning, and returns the model with a record of what was adapted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.models.loader import LoadedModel
from sumcircuit.training.adapters import (
    HeadMask,
    add_lora,
    equal_budget_rank,
    head_masks,
    layer_rank_pattern,
    lora_entries,
)
from sumcircuit.training.config import FinetuneConfig

log = logging.getLogger(__name__)


@dataclass
class Adapted:
    """The model being trained and what was adapted."""

    model: torch.nn.Module
    masks: list[HeadMask] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    rank: int | None = None
    budget: dict[str, Any] = field(default_factory=dict)


def select_adapters(config: FinetuneConfig, loaded: LoadedModel) -> Adapted:
    """Wrap ``loaded.model`` for ``config``: LoRA on the chosen layers/heads, or all weights."""
    model, arch = loaded.model, loaded.arch
    if config.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return Adapted(model=model)
    layers, heads = config.layers, config.heads
    if config.circuit is not None:
        circuit = Circuit.load(config.circuit)
        circuit.check_not_empty(config.circuit)
        circuit.check(arch, loaded.identity)
        if circuit.level == "head":
            heads = circuit.heads
        else:
            layers = circuit.layers
    if heads is not None:
        layers = sorted({layer for layer, _ in heads})
    for layer in layers or []:
        arch.check_layer(layer)
    modules = arch.lora_targets(
        layers if layers is not None else list(range(arch.n_layers)), config.targets
    )
    masks = head_masks(model, arch, heads, config.targets) if heads is not None else []
    rank, budget = config.rank, {}
    if config.equal_budget:
        rank, budget = equal_budget_rank(model, arch, modules, masks, config.rank, config.targets)
        log.info(
            "equal budget: rank %d -> %d (%d trainable vs standard %d)",
            config.rank,
            rank,
            budget["targeted_params"],
            budget["standard_params"],
        )
    alpha = config.alpha * rank / config.rank  # keep alpha/rank (the LoRA scale) fixed
    rank_pattern, alpha_pattern = {}, {}
    if config.layer_ranks:
        adapted = layers if layers is not None else range(arch.n_layers)
        for layer in config.layer_ranks:
            arch.check_layer(layer)
        rank_pattern, alpha_pattern = layer_rank_pattern(
            arch, config.layer_ranks, config.targets, rank, alpha
        )
        budget = {
            "rank": rank,
            "layer_ranks": {str(k): v for k, v in config.layer_ranks.items()},
            "params": sum(
                lora_entries(model, arch, arch.lora_targets([layer], config.targets), r)
                for layer, r in {**dict.fromkeys(adapted, rank), **config.layer_ranks}.items()
            ),
        }
        log.info(
            "per-layer ranks %s (others %d): %d trainable parameters",
            config.layer_ranks,
            rank,
            budget["params"],
        )
    peft_model = add_lora(
        model,
        arch,
        modules,
        rank=rank,
        alpha=alpha,
        dropout=config.lora_dropout,
        seed=config.seed,
        masks=masks,
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
    )
    return Adapted(peft_model, masks, modules, rank, budget)
