"""Loop rate: hand-made summaries that loop or not, and the rate with its bootstrap CI."""

from __future__ import annotations

import numpy as np
import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.loops import LOOP_NGRAM, loop_flags, loop_rate, loops
from sumcircuit.stats import bootstrap_ci


@pytest.mark.parametrize(
    "text,expected",
    [
        ("the police said the police said it", True),  # "the police said" twice
        ("a a a a", True),  # overlapping occurrences count: "a a a" at words 0 and 1
        ("a a a", False),  # one 3-gram only
        ("The man went home. the man went out", True),  # lowercased: "the man went" twice
        ("the man went home and the man came back", False),  # a repeated 2-gram is not a loop
        ("Rain hit the north.\nSnow hit the south", False),  # only "hit the" repeats
        ("storm hits town,\nstorm hits town", False),  # "town," and "town" are different words
        ("storm  hits\ttown storm hits\ntown", True),  # any whitespace splits words
        ("", False),
        ("one two three four five six", False),
    ],
)
def test_loops_on_hand_made_summaries(text: str, expected: bool) -> None:
    assert loops(text) is expected


def test_the_ngram_size_is_three() -> None:
    assert LOOP_NGRAM == 3
    assert loops("x y x y") is False and loops("x y x y", n=2) is True


def test_loop_rate_and_its_ci() -> None:
    texts = ["a b c a b c", "fine summary here", "x x x x", "no loop at all", "also fine"]
    out = loop_rate(texts, seed=3, n_boot=500)
    assert out["rate"] == pytest.approx(2 / 5) and out["n_loops"] == 2
    np.testing.assert_array_equal(loop_flags(texts), [1.0, 0.0, 1.0, 0.0, 0.0])
    lo, hi = bootstrap_ci(np.array([1.0, 0.0, 1.0, 0.0, 0.0]), n_boot=500, seed=3)
    assert out["ci95"] == [lo, hi] and lo < 0.4 < hi
    assert out["ngram"] == 3 and "whitespace" in out["words"]
    assert loop_rate(["fine", "also fine"])["ci95"] == [0.0, 0.0]


def test_no_predictions_is_one_sentence() -> None:
    with pytest.raises(SumcircuitError, match="no predictions to measure a loop rate"):
        loop_rate([])
