"""The position baselines: registered locators whose top-k sets are the layers they name."""

import pytest

from sumcircuit.analysis.locate.registry import Shape, locator, names
from sumcircuit.errors import SumcircuitError

SHAPE = Shape(n_layers=30, n_heads=9)


@pytest.mark.parametrize(
    "name, k, layers",
    [
        ("first-k", 3, [0, 1, 2]),
        ("last-k", 3, [29, 28, 27]),
        ("evenly-spaced", 1, [15]),
        ("evenly-spaced", 3, [5, 15, 25]),
        ("evenly-spaced", 8, [1, 5, 9, 13, 16, 20, 24, 28]),
    ],
)
def test_top_k_layers(name, k, layers):
    assert locator(name).rank("layer", shape=SHAPE).top(k) == layers


def test_heads_are_ordered_layer_by_layer():
    assert locator("first-k").rank("head", shape=SHAPE).top(2) == [(0, 0), (0, 1)]
    assert locator("last-k").rank("head", shape=SHAPE).top(1) == [(29, 8)]
    assert locator("evenly-spaced").rank("head", shape=Shape(2, 2)).top(2) == [(0, 1), (1, 1)]


def test_baselines_are_controls_not_candidates():
    baselines = {"first-k", "last-k", "evenly-spaced"}
    assert baselines <= set(names())
    assert not baselines & set(names(candidates_only=True))
    ranking = locator("last-k").rank("layer", shape=SHAPE)
    assert (ranking.split, ranking.limit, ranking.directory) == (None, None, None)


def test_a_locator_that_reads_a_result_needs_its_directory():
    with pytest.raises(SumcircuitError, match="--source atp=DIR"):
        locator("atp").rank("layer")
    with pytest.raises(SumcircuitError, match="unknown locator 'nope'; valid: kl, js"):
        locator("nope")
