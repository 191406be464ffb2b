"""Loop rate: the share of generated summaries that repeat themselves.

Small models decoding greedily fall into loops ("the police said the police said the ...");
ROUGE hides how often. Definition, pinned by hand-made tests:

- a summary's *words* are its text lowercased and split on whitespace (``str.split``),
  punctuation kept attached — whitespace words rather than model tokens, so that the rate is the
  same for every tokenizer and can be recomputed from any saved prediction;
- a summary **loops** when some word 3-gram (:data:`LOOP_NGRAM` consecutive words) occurs at
  least twice in it, occurrences allowed to overlap ("a a a a" loops: "a a a" at words 0 and 1);
  a summary of fewer than 4 words cannot loop;
- the **loop rate** of an evaluation is the fraction of its summaries that loop, with a 95%
  percentile bootstrap CI over summaries (:func:`sumcircuit.stats.bootstrap_ci`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sumcircuit.errors import SumcircuitError
from sumcircuit.stats import bootstrap_ci

__all__ = ["LOOP_NGRAM", "loop_flags", "loop_rate", "loops"]

LOOP_NGRAM = 3  # words per repeated n-gram that makes a summary loop


def loops(text: str, n: int = LOOP_NGRAM) -> bool:
    """True when some ``n``-gram of ``text``'s lowercased whitespace words occurs twice."""
    words = text.lower().split()
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            return True
        seen.add(gram)
    return False


def loop_flags(predictions: Sequence[str]) -> np.ndarray:
    """``(n,)`` float64: 1.0 where a prediction loops, else 0.0."""
    return np.asarray([float(loops(p)) for p in predictions], dtype=np.float64)


def loop_rate(predictions: Sequence[str], *, seed: int = 0, n_boot: int = 2000) -> dict[str, Any]:
    """``{"rate", "ci95": [lo, hi], "n_loops", "ngram", "words"}`` of ``predictions``: the loop
    rate, its bootstrap CI over predictions (seed ``seed``, ``n_boot`` resamples), how many
    loop, and the definition (n-gram size; how words are found)."""
    if len(predictions) == 0:
        raise SumcircuitError("no predictions to measure a loop rate on; generate at least one")
    flags = loop_flags(predictions)
    lo, hi = bootstrap_ci(flags, n_boot=n_boot, seed=seed)
    return {
        "rate": float(flags.mean()),
        "ci95": [float(lo), float(hi)],
        "n_loops": int(flags.sum()),
        "ngram": LOOP_NGRAM,
        "words": "lowercased, split on whitespace",
    }
