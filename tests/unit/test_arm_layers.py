"""Which layers each LoRA arm adapts: anti avoids the circuit, random draws differ where they can."""

from __future__ import annotations

import math
import random

from sumcircuit.analysis.circuit import Circuit
from sumcircuit.study.run import _arm_layers, _random_layers


def _circuit(layers: list[int]) -> Circuit:
    return Circuit(model={}, level="layer", rule="topk", score="atp", layers=layers)


def test_anti_is_the_least_changed_layers_outside_the_circuit() -> None:
    ranked = [5, 4, 3, 2, 1, 0]  # by KL, most changed first; the circuit holds low-KL layer 0
    circuit = _circuit([5, 0])
    layers = _arm_layers("anti", circuit, circuit, ranked, 6, draw=0, seed=0)
    assert layers == [1, 2]


def test_random_draws_never_repeat_while_unused_sets_remain() -> None:
    others = [0, 1, 2, 3]  # 6 two-layer sets: six draws use each once
    draws = [_random_layers(others, 2, seed=0, draw=d) for d in range(1, 7)]
    assert len({tuple(d) for d in draws}) == math.comb(4, 2)
    # a seventh draw has no unused set left and repeats one instead of looping
    assert tuple(_random_layers(others, 2, seed=0, draw=7)) in {tuple(d) for d in draws}


def test_a_draw_is_its_own_seeded_sample_when_it_does_not_repeat() -> None:
    # the first draw is the study's first sample of its generator: earlier studies reproduce
    others = list(range(27))
    first = sorted(random.Random("0-1").sample(others, 3))
    assert _random_layers(others, 3, seed=0, draw=1) == first
    circuit = _circuit([27, 28, 29])
    assert _arm_layers("random", circuit, circuit, [], 30, draw=1, seed=0) == first
