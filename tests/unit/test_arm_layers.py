"""Which layers each LoRA arm adapts: anti avoids the circuit, random draws differ where they can;
every registered arm through the public registry."""

from __future__ import annotations

import math
import random

import pytest

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.errors import SumcircuitError
from sumcircuit.study.arms import ARMS, ArmContext, arm, random_layers


def _circuit(layers: list[int]) -> Circuit:
    return Circuit(model={}, level="layer", rule="topk", score="atp", layers=layers)


def _context(circuit: Circuit, ranked: list[int], n_layers: int, **kw) -> ArmContext:
    return ArmContext(circuit, circuit, ranked=ranked, n_layers=n_layers, **kw)


def test_anti_is_the_least_changed_layers_outside_the_circuit() -> None:
    ranked = [5, 4, 3, 2, 1, 0]  # by KL, most changed first; the circuit holds low-KL layer 0
    circuit = _circuit([5, 0])
    assert arm("anti").adapts(_context(circuit, ranked, 6)) == {"layers": [1, 2]}


def test_random_draws_never_repeat_while_unused_sets_remain() -> None:
    others = [0, 1, 2, 3]  # 6 two-layer sets: six draws use each once
    draws = [random_layers(others, 2, seed=0, draw=d) for d in range(1, 7)]
    assert len({tuple(d) for d in draws}) == math.comb(4, 2)
    # a seventh draw has no unused set left and repeats one instead of looping
    assert tuple(random_layers(others, 2, seed=0, draw=7)) in {tuple(d) for d in draws}


def test_a_draw_is_its_own_seeded_sample_when_it_does_not_repeat() -> None:
    # the first draw is the study's first sample of its generator: earlier studies reproduce
    others = list(range(27))
    first = sorted(random.Random("0-1").sample(others, 3))
    assert random_layers(others, 3, seed=0, draw=1) == first
    circuit = _circuit([27, 28, 29])
    context = _context(circuit, [], 30, draw=1, seed=0)
    assert arm("random").adapts(context) == {"layers": first}


def test_every_registered_arm_says_what_it_adapts() -> None:
    circuit, kl = _circuit([1, 2]), _circuit([3, 4])
    context = ArmContext(kl, circuit, ranked=[4, 3, 2, 1, 0, 5], n_layers=6, draw=1)
    assert arm("standard").adapts(context) == {}
    assert arm("targeted-kl").circuit == "kl"
    assert arm("targeted-kl").adapts(context) == {"layers": [3, 4]}  # its own circuit
    assert arm("targeted-equal-budget").adapts(context) == {"layers": [3, 4], "equal_budget": True}
    assert arm("random").variants(3) == [("random1", 1), ("random2", 2), ("random3", 3)]
    assert arm("random").variants(1) == [("random", 1)]
    assert arm("targeted").variants(3) == [("targeted", 0)]
    assert set(ARMS) >= {"standard", "targeted", "random", "anti", "heads"}
    with pytest.raises(SumcircuitError, match="unknown LoRA arm 'best'; valid: standard"):
        arm("best")
