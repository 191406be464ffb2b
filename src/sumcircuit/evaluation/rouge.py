"""ROUGE with Google's ``rouge-score`` (stemming on), bootstrap CIs and paired arm comparisons.

ROUGE-Lsum is the summary-level LCS over *sentences*, and ``rouge-score`` finds the sentences
by splitting on "\\n" only. Model outputs and XSum/CNN-DM references usually arrive as plain
text without newlines, so scored as-is ROUGE-Lsum would silently equal ROUGE-L (the mistake
lm-evaluation-harness makes by collapsing newlines). We therefore put every sentence on its own
line first with :func:`split_sentences`: a simple punctuation regex rather than
``nltk.sent_tokenize``, because punkt needs a data download and we run offline. The newlines do
not change ROUGE-1/2/L, whose tokenizer treats "\\n" as whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from rouge_score import rouge_scorer

from sumcircuit.errors import SumcircuitError
from sumcircuit.stats import bootstrap_ci, paired_bootstrap_diff

__all__ = ["METRICS", "aggregate", "compare", "score_pairs", "split_sentences"]

METRICS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """Return ``text`` with one sentence per line, for ROUGE-Lsum.

    Existing line breaks are kept as sentence breaks; within a line, a sentence ends at
    ".", "!" or "?" followed by whitespace (regex ``(?<=[.!?])\\s+``). Empty lines are dropped.
    """
    sentences = (s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line.strip()))
    return "\n".join(s for s in sentences if s)


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise SumcircuitError(
            f"predictions and references must pair up one to one; got {len(predictions)} "
            f"predictions and {len(references)} references."
        )
    if len(predictions) == 0:
        raise SumcircuitError("predictions and references are empty; score at least one pair.")
    for name, texts in (("predictions", predictions), ("references", references)):
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise SumcircuitError(
                f"{name}[{bad}] is {type(texts[bad]).__name__}, not str; pass decoded text."
            )


def score_pairs(predictions: list[str], references: list[str]) -> pd.DataFrame:
    """F1 of ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum per example, in [0, 1].

    ``RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)`` scores
    ``(target=reference, prediction=prediction)`` after :func:`split_sentences` on both.
    Returns a frame with one row per pair and columns rouge1, rouge2, rougeL, rougeLsum.
    """
    _check_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
    rows = []
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(split_sentences(ref), split_sentences(pred))
        rows.append([scores[m].fmeasure for m in METRICS])
    return pd.DataFrame(
        np.asarray(rows, dtype=np.float64).reshape(-1, len(METRICS)), columns=METRICS
    )


def _metric_matrix(frame: pd.DataFrame, name: str) -> np.ndarray:
    missing = [m for m in METRICS if m not in frame.columns]
    if missing:
        raise SumcircuitError(
            f"{name} lacks the ROUGE columns {missing}; build it with score_pairs()."
        )
    if len(frame) == 0:
        raise SumcircuitError(f"{name} has no rows; score at least one pair.")
    return frame[list(METRICS)].to_numpy(dtype=np.float64)


def aggregate(frame: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000) -> dict:
    """Mean F1 per metric with a 95% percentile bootstrap CI over examples.

    Returns ``{"rouge1": {"f": mean, "ci95": [lo, hi]}, ..., "rougeLsum": {...}, "n": n}``
    (plain floats, JSON-ready). All metrics share the same resampled examples.
    """
    scores = _metric_matrix(frame, "frame")  # (n, 4)
    lo, hi = bootstrap_ci(scores, n_boot=n_boot, seed=seed)
    means = scores.mean(axis=0)
    out: dict = {
        m: {"f": float(means[i]), "ci95": [float(lo[i]), float(hi[i])]}
        for i, m in enumerate(METRICS)
    }
    out["n"] = int(scores.shape[0])
    return out


def compare(
    frame_a: pd.DataFrame, frame_b: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000
) -> dict:
    """Paired bootstrap difference a − b per metric, on the same examples in the same order.

    Returns ``{"rouge1": {"mean_diff": d, "ci95": [lo, hi], "p_value": p}, ..., "n": n}``
    (JSON-ready) from :func:`sumcircuit.stats.paired_bootstrap_diff`.
    """
    a = _metric_matrix(frame_a, "frame_a")
    b = _metric_matrix(frame_b, "frame_b")
    if a.shape != b.shape or not frame_a.index.equals(frame_b.index):
        raise SumcircuitError(
            f"frame_a ({len(frame_a)} rows) and frame_b ({len(frame_b)} rows) must score the "
            "same examples in the same order; score both arms on the same references."
        )
    out: dict = {}
    for i, m in enumerate(METRICS):
        res = paired_bootstrap_diff(a[:, i], b[:, i], n_boot=n_boot, seed=seed)
        out[m] = {"mean_diff": res.mean_diff, "ci95": list(res.ci95), "p_value": res.p_value}
    out["n"] = int(a.shape[0])
    return out
