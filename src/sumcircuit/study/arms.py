"""The LoRA arm registry: what each arm of the study adapts, registered once.

An arm is a name and a function from the study's context (:class:`ArmContext`: the arm's
circuit, the diff's KL ranking, the random draw, the study's seed, the model's size) to what it
adapts: the keyword arguments of its fine-tuning config (``layers``, ``heads``,
``equal_budget``, ``rank`` and ``layer_ranks``; none for all layers). ``circuit`` names the
locator whose circuit the arm reads: ``faithful`` is the study's own circuit (stage ``locate``),
another locator's name plans a ``locate-<name>`` stage beside it (``targeted-kl`` reads ``kl``),
None reads none. ``reads`` names other stages the arm's rule reads (``targeted-adapt`` reads the
placement curve). A ``drawn`` arm trains ``lora.random_draws`` variants, ``random1``,
``random2``, ...

Adding an arm is one function and one :func:`register_arm` line; the study plans its stages
from :data:`ARMS`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sumcircuit.analysis.diff.result import DiffResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.placement.result import PlacementResult
from sumcircuit.errors import SumcircuitError
from sumcircuit.layout import RunLayout
from sumcircuit.training.adapters import reallocated_ranks

__all__ = [
    "ARMS",
    "FAITHFUL",
    "Arm",
    "ArmContext",
    "arm",
    "circuit_heads",
    "distinct_random_sets",
    "random_layers",
    "register_arm",
]

FAITHFUL = "faithful"


@dataclass(frozen=True)
class ArmContext:
    """What an arm's rule reads. ``circuit``: the arm's circuit (the study's own for arms that
    read ``faithful``); ``study_circuit``: the study's own, which the controls avoid; ``draw``:
    the draw of a drawn arm (from 1), 0 otherwise; ``seed``: the study's first seed, so every
    training seed of ``random<draw>`` trains the layers its summary row reports."""

    circuit: Circuit
    study_circuit: Circuit
    ranked: list[int]  # layers by attention KL, most changed first
    n_layers: int
    draw: int = 0
    seed: int = 0
    diff: DiffResult | None = None  # the heads arm picks a layer circuit's heads by KL
    heads_per_layer: int = 3
    placement: PlacementResult | None = None  # the placement curve, for arms that read it
    rank: int = 8  # the LoRA section's rank and alpha, for arms that reallocate them
    alpha: float = 16.0

    @property
    def others(self) -> list[int]:
        """The layers outside the study's circuit."""
        return [layer for layer in range(self.n_layers) if layer not in self.study_circuit.layers]


Adapts = Callable[[ArmContext], dict[str, Any]]


@dataclass(frozen=True)
class Arm:
    name: str
    adapts: Adapts
    circuit: str | None = FAITHFUL
    drawn: bool = False
    help: str = ""
    reads: tuple[str, ...] = ()  # other stages the rule reads (their folders)

    def variants(self, draws: int) -> list[tuple[str, int]]:
        """``(row name, draw)`` of each training variant: ``random1``..``randomN`` for a drawn
        arm with several draws, the arm's own name otherwise."""
        if not self.drawn:
            return [(self.name, 0)]
        return [(f"{self.name}{d}" if draws > 1 else self.name, d) for d in range(1, draws + 1)]


ARMS: dict[str, Arm] = {}


def register_arm(
    name: str,
    *,
    circuit: str | None = FAITHFUL,
    drawn: bool = False,
    help: str = "",
    reads: tuple[str, ...] = (),
) -> Callable[[Adapts], Adapts]:
    """Decorator: register ``fn(context) -> adapts`` as arm ``name``."""

    def add(fn: Adapts) -> Adapts:
        if name in ARMS:
            raise ValueError(f"arm {name!r} is registered twice")
        ARMS[name] = Arm(name, fn, circuit, drawn, help or (fn.__doc__ or "").strip(), reads)
        return fn

    return add


def arm(name: str) -> Arm:
    if name not in ARMS:
        raise SumcircuitError(f"unknown LoRA arm {name!r}; valid: {', '.join(ARMS)}")
    return ARMS[name]


# -- the built-in arms ---------------------------------------------------------------------------
@register_arm("standard", circuit=None)
def standard(ctx: ArmContext) -> dict[str, Any]:
    """every layer"""
    return {}


@register_arm("targeted")
def targeted(ctx: ArmContext) -> dict[str, Any]:
    """the study's circuit"""
    return {"layers": ctx.circuit.layers}


@register_arm("targeted-kl", circuit="kl")
def targeted_kl(ctx: ArmContext) -> dict[str, Any]:
    """the paper's choice: the top layers by attention KL"""
    return {"layers": ctx.circuit.layers}


@register_arm("random", drawn=True)
def random_arm(ctx: ArmContext) -> dict[str, Any]:
    """as many random layers outside the circuit (one set per draw)"""
    others = ctx.others
    k = min(len(ctx.circuit.layers), len(others))
    return {"layers": random_layers(others, k, seed=ctx.seed, draw=ctx.draw)}


@register_arm("anti")
def anti(ctx: ArmContext) -> dict[str, Any]:
    """the layers KL ranks lowest outside the circuit (a circuit from another locator can hold
    a low-KL layer)"""
    k, others = len(ctx.circuit.layers), ctx.others
    return {"layers": sorted([layer for layer in ctx.ranked if layer in others][-k:])}


@register_arm("targeted-equal-budget")
def equal_budget(ctx: ArmContext) -> dict[str, Any]:
    """the circuit's layers at the rank that matches standard's parameter count"""
    return {"layers": ctx.circuit.layers, "equal_budget": True}


@register_arm("heads")
def heads(ctx: ArmContext) -> dict[str, Any]:
    """adapters restricted to the circuit's heads"""
    return {"heads": circuit_heads(ctx.circuit, ctx.diff, ctx.heads_per_layer)}


@register_arm("targeted-adapt", reads=(RunLayout.PLACEMENT,))
def targeted_adapt(ctx: ArmContext) -> dict[str, Any]:
    """the top-k layers (k: the circuit's size) of the locator that closed the most gap on the
    placement curve, chosen on the curve's documents"""
    return {"layers": adapt_choice(ctx.placement, len(ctx.circuit.layers))["layers"]}


def adapt_choice(placement: PlacementResult | None, k: int) -> dict[str, Any]:
    """The placement curve's row that ``targeted-adapt`` trains: the locator that closed the
    most gap at ``k`` (same rank), with its layers, gap closed and percentile."""
    if placement is None:
        raise SumcircuitError(
            "the targeted-adapt arm reads the placement curve: set placement.enabled: true"
        )
    return placement.best_at(k)


@register_arm("circuit-rank")
def circuit_rank(ctx: ArmContext) -> dict[str, Any]:
    """CircuitLoRA: every layer at half the rank, the circuit's layers higher, trainable
    parameters equal to standard's"""
    low = max(1, ctx.rank // 2)
    if ctx.rank < 2:
        raise SumcircuitError(
            f"the circuit-rank arm halves lora.rank on the layers outside the circuit; "
            f"lora.rank={ctx.rank} has no lower rank, use 2 or more"
        )
    ranks = reallocated_ranks(ctx.n_layers, ctx.circuit.layers, ctx.rank, low)
    return {"rank": low, "alpha": ctx.alpha * low / ctx.rank, "layer_ranks": ranks}


def distinct_random_sets(n_layers: int, circuit_size: int) -> int:
    """How many different layer sets the random arm can draw: sets of the circuit's size (or
    of every other layer, when fewer remain) among the layers outside a circuit of
    ``circuit_size`` layers."""
    others = max(0, n_layers - circuit_size)
    return math.comb(others, min(circuit_size, others))


def random_layers(others: list[int], k: int, *, seed: int, draw: int) -> list[int]:
    """Draw ``draw`` (from 1) of ``k`` of ``others``: each draw its own generator seeded by
    ``seed`` and the draw, redrawn while it repeats an earlier draw and unused sets remain, so
    draws differ where they can."""
    drawn: list[list[int]] = []
    for d in range(1, draw + 1):
        rng = random.Random(f"{seed}-{d}")
        layers = sorted(rng.sample(others, k))
        while layers in drawn and len(drawn) < math.comb(len(others), k):
            layers = sorted(rng.sample(others, k))
        drawn.append(layers)
    return drawn[-1]


def circuit_heads(
    circuit: Circuit, diff: DiffResult | None, per_layer: int
) -> list[tuple[int, int]]:
    """The circuit's heads, or for a layer circuit its top heads by KL in each circuit layer."""
    if circuit.heads:
        return circuit.heads
    if diff is None:
        raise SumcircuitError("the heads arm needs the diff to pick a layer circuit's heads")
    return [(layer, h) for layer in circuit.layers for h in diff.top_heads(layer, per_layer, "kl")]
