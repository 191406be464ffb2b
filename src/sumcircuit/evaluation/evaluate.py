"""The evaluate stage: generate summaries for a split and score them with ROUGE, and score the
reference summaries' log-likelihood under the model.

``evaluate(EvaluateConfig) -> EvalResult``. The result is saved as one JSON file (``FILE``):
``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum`` (each ``{"f": mean F1, "ci95": [lo, hi]}``),
``loglik`` (``{"mean", "ci95": [lo, hi], "n_tokens", "wall_s"}``: the mean log-likelihood per
reference-summary token, see :mod:`sumcircuit.evaluation.loglik`; null when not scored),
``n``, ``generation`` (the settings), ``wall_s``, ``provenance``, ``predictions`` (the name of
the JSONL beside it), plus the per-example predictions as JSONL at ``FILE`` with the suffix
``.predictions.jsonl`` (id, document's first 300 characters, reference, prediction, the four
per-example F1 scores and ``loglik``, null when not scored). Both are written atomically.
Results written before ``loglik`` existed load with ``loglik`` None and the column NaN.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from sumcircuit.configs import check_at_least
from sumcircuit.data.batching import prepare_for
from sumcircuit.data.options import SplitDataOptions, scoring_split
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.evaluation.generate import rouge_on_split
from sumcircuit.evaluation.loglik import loglik_on_split
from sumcircuit.evaluation.rouge import METRICS, compare
from sumcircuit.io import read_json, sha256_file, write_json
from sumcircuit.manifest import confinement_problem
from sumcircuit.models.shape import check_max_length, model_shape
from sumcircuit.models.trained import load_trained
from sumcircuit.provenance import provenance
from sumcircuit.results import StageResult, read_jsonl, read_result_json, reading, write_jsonl
from sumcircuit.stats import paired_bootstrap_diff

__all__ = [
    "DOCUMENT_CHARS",
    "EvalResult",
    "EvaluateConfig",
    "LOGLIK",
    "compare_results",
    "evaluate",
    "predictions_path",
    "read_predictions",
]

log = logging.getLogger(__name__)

DOCUMENT_CHARS = 300  # characters of each document kept in the predictions JSONL
LOGLIK = "loglik"  # mean log-likelihood per reference-summary token, per example and overall
PREDICTION_COLUMNS = ("id", "document", "reference", "prediction", *METRICS, LOGLIK)
PREDICTIONS_SUFFIX = ".predictions.jsonl"  # eval.json -> eval.predictions.jsonl


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class EvaluateConfig(SplitDataOptions):
    """What to evaluate, on which examples (:class:`~sumcircuit.data.options.SplitDataOptions`),
    and how to generate."""

    split: str = scoring_split()
    model: str = field(default="smollm2-135m", metadata=_help("preset, local dir or HF id"))
    adapter: str | None = field(default=None, metadata=_help("LoRA adapter directory"))
    out: str = field(default="", metadata=_help("result JSON file"))
    max_new_tokens: int = field(default=48, metadata=_help("summary length cap in tokens"))
    num_beams: int = field(default=1, metadata=_help("1 = greedy, >1 = beam search"))
    stop_at_newline: bool = field(
        default=True, metadata=_help("end a summary at its first newline (one-sentence data)")
    )
    bf16: bool = field(default=False, metadata=_help("bf16 autocast during generation"))
    loglik: bool = field(
        default=True, metadata=_help("also score the reference's log-likelihood per token")
    )
    seed: int = field(default=0, metadata=_help("seed of torch and of the bootstrap"))
    n_boot: int = field(default=2000, metadata=_help("bootstrap resamples for the CIs"))
    progress: bool = field(default=True, metadata=_help("show a progress bar"))

    def __post_init__(self) -> None:
        super().__post_init__()  # types and choices of every field
        check_at_least(self, ("max_new_tokens", "num_beams", "n_boot"), 1)
        check_at_least(self, ("seed",), 0)
        if self.max_new_tokens >= self.max_length:
            raise ConfigError(
                "max_new_tokens",
                f"{{key}} ({self.max_new_tokens}) must be below --max-length "
                f"({self.max_length}) to leave room for the document",
            )

    def generation(self) -> dict[str, Any]:
        """The settings that decide the generated text (recorded in the result)."""
        keys = ("max_new_tokens", "num_beams", "max_length", "template", "stop_at_newline", "bf16")
        return {k: getattr(self, k) for k in keys} | {"decoding": self.decoding()}

    def decoding(self) -> str:
        return "greedy" if self.num_beams == 1 else f"beam search ({self.num_beams} beams)"


def predictions_path(result_path: str | Path) -> Path:
    """``eval.json`` -> ``eval.predictions.jsonl`` (beside it); a directory -> its
    ``result.predictions.jsonl``."""
    return EvalResult.path(result_path).with_suffix(PREDICTIONS_SUFFIX)


@dataclass
class EvalResult(StageResult):
    """ROUGE and reference log-likelihood of one model on one split, with per-example
    predictions.

    ``save(target)``/``load(target)``: ``target`` is a directory (``DIR/result.json``, as in a
    study run) or the result JSON file itself (``sumcircuit evaluate --out eval.json``); the
    predictions JSONL lies beside the JSON.
    """

    FILE: ClassVar[str] = "result.json"
    STAGE: ClassVar[str] = "evaluate"
    FILE_OR_DIR: ClassVar[bool] = True

    # rouge.aggregate(): {metric: {"f", "ci95"}, "n": n}, plus "loglik": {"mean", "ci95",
    # "n_tokens", "wall_s"} or None (not scored, or a result written before loglik existed)
    scores: dict[str, Any]
    generation: dict[str, Any]
    wall_s: float
    provenance: dict[str, Any]
    predictions: pd.DataFrame  # PREDICTION_COLUMNS, one row per example (loglik NaN: not scored)
    encode_report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """A result built without the reference log-likelihood has it as None / NaN."""
        self.scores.setdefault(LOGLIK, None)
        if LOGLIK not in self.predictions.columns:
            self.predictions = self.predictions.assign(**{LOGLIK: np.nan})

    @property
    def n(self) -> int:
        return int(self.scores["n"])

    @property
    def loglik(self) -> dict[str, Any] | None:
        """``{"mean", "ci95", "n_tokens", "wall_s"}`` of the reference log-likelihood, or None
        when this result has none (``--no-loglik``, or written before it existed)."""
        return self.scores.get(LOGLIK)

    def _json(self) -> dict[str, Any]:
        """The result JSON's content, without the predictions (they go to the JSONL)."""
        return {
            **{m: self.scores[m] for m in METRICS},
            LOGLIK: self.loglik,
            "n": self.n,
            "generation": self.generation,
            "wall_s": self.wall_s,
            "encode_report": self.encode_report,
            "provenance": self.provenance,
        }

    def _rows(self) -> list[dict[str, Any]]:
        """The predictions as JSON-ready dicts (a NaN loglik becomes null)."""
        rows = self.predictions[list(PREDICTION_COLUMNS)].to_dict(orient="records")
        for row in rows:
            if row[LOGLIK] is not None and not np.isfinite(row[LOGLIK]):
                row[LOGLIK] = None
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The result JSON's content, with ``predictions`` as a list of per-example dicts."""
        return self._json() | {"predictions": self._rows()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        missing = [k for k in (*METRICS, "n", "predictions") if k not in data]
        if missing:
            raise SumcircuitError(
                f"not a sumcircuit evaluate result (missing {', '.join(missing)})"
            )
        predictions = _prediction_frame(data["predictions"])
        loglik = data.get(LOGLIK)
        if loglik is not None and predictions[LOGLIK].isna().any():
            raise SumcircuitError(
                "some predictions lack the loglik score that the result's summary reports"
            )
        return cls(
            scores={m: data[m] for m in METRICS} | {LOGLIK: loglik, "n": data["n"]},
            generation=data.get("generation", {}),
            wall_s=float(data.get("wall_s", 0.0)),
            provenance=data.get("provenance", {}),
            predictions=predictions,
            encode_report=data.get("encode_report", {}),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per ROUGE metric (``f``: mean F1) and, when scored, a ``loglik`` row (``f``:
        mean log-likelihood per reference token); columns metric, f, ci_low, ci_high."""
        rows = [(m, self.scores[m]["f"], *self.scores[m]["ci95"]) for m in METRICS]
        if self.loglik is not None:
            rows.append((LOGLIK, self.loglik["mean"], *self.loglik["ci95"]))
        return pd.DataFrame(rows, columns=["metric", "f", "ci_low", "ci_high"])

    def save(self, target: str | Path) -> Path:
        """Write the result JSON and the predictions JSONL beside it (atomically, the JSON
        last); returns the JSON's path."""
        path = self.path(target)
        jsonl = predictions_path(path)
        write_jsonl(jsonl, self._rows())
        write_json(path, self._json() | {"predictions": jsonl.name})
        return path

    @classmethod
    def load(cls, target: str | Path) -> EvalResult:
        path, fix = cls.path(target), cls.fix(target)
        data = read_result_json(path, fix)
        jsonl = _recorded_predictions(path, data.get("predictions"), fix)
        jsonl_fix = f"keep it beside {str(path)!r} or {fix}"
        rows = read_jsonl(jsonl, jsonl_fix)
        with reading(jsonl, jsonl_fix, check_exists=False):
            _prediction_frame(rows)
        with reading(path, fix, check_exists=False):
            result = cls.from_dict(data | {"predictions": rows})
        if len(result.predictions) != result.n:
            raise SumcircuitError(
                f"{str(jsonl)!r} is damaged ({len(result.predictions)} predictions, "
                f"{path.name} says n = {result.n}); {fix}"
            )
        return result


def _recorded_predictions(path: Path, name: Any, fix: str) -> Path:
    """The predictions JSONL the result ``path`` records: a file inside the result's own folder
    (reached without symlinks), never one elsewhere — not ``/etc/passwd``, not another arm's."""
    if not isinstance(name, str):  # an older result: the name beside it
        return predictions_path(path)
    problem = confinement_problem(path.parent, name)
    if problem is not None and problem != "does not exist":  # a missing file: read_jsonl says so
        raise SumcircuitError(
            f"{str(path)!r} names its predictions {name!r}, which {problem}; a result's "
            f"predictions lie in its own folder ({predictions_path(path).name}): {fix}"
        )
    return path.parent / name


def _prediction_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The predictions frame; a row without ``loglik`` (not scored, or an older result) gets
    NaN there."""
    frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    if frame[list(METRICS)].isna().any().any() or frame["id"].isna().any():
        raise SumcircuitError("some predictions lack ids or ROUGE scores")
    frame["id"] = frame["id"].astype(str)
    frame[LOGLIK] = pd.to_numeric(frame[LOGLIK], errors="raise").astype(np.float64)
    return frame


def read_predictions(result_path: str | Path) -> pd.DataFrame:
    """The per-example predictions of a saved result, as a frame with ``PREDICTION_COLUMNS``."""
    return EvalResult.load(result_path).predictions


def _model_identity(identity: dict[str, Any], adapter: str | None) -> dict[str, Any]:
    """The loaded model's identity, with the adapter's path and weights checksum when given."""
    out = dict(identity)
    if adapter is not None:
        weights = Path(adapter) / "adapter_model.safetensors"
        out["adapter"] = {
            "path": str(Path(adapter).resolve()),
            "sha256": sha256_file(weights) if weights.exists() else None,
        }
    return out


def evaluate(config: EvaluateConfig) -> EvalResult:
    """Generate a summary for each example of ``config.split`` and score it with ROUGE; with
    ``config.loglik`` also score each reference summary's mean log-likelihood per token after
    the same prompt (:func:`sumcircuit.evaluation.loglik.loglik_on_split`).

    Saves the result to ``config.out`` when it is set. ``wall_s`` covers loading, generation and
    scoring.
    """
    start = time.perf_counter()
    check_max_length(model_shape(config.model), config.max_length)  # before any weights or data
    torch.manual_seed(config.seed)
    loaded = load_trained(config.model, config.adapter)
    prepared = prepare_for(
        config,
        loaded.tokenizer,
        with_summary=False,
        reserve=config.max_new_tokens,
    )
    log.info(
        "evaluating %s on %d examples of %s/%s",
        config.model,
        len(prepared),
        config.data,
        config.split,
    )
    scores, frame = rouge_on_split(
        loaded.model,
        loaded.tokenizer,
        prepared,
        batch_size=config.batch_size,
        max_new_tokens=config.max_new_tokens,
        num_beams=config.num_beams,
        seed=config.seed,
        stop_at_newline=config.stop_at_newline,
        bf16=config.bf16,
        progress=config.progress,
        n_boot=config.n_boot,
    )
    frame.insert(1, "document", [e.document[:DOCUMENT_CHARS] for e in prepared.examples])
    frame[LOGLIK] = np.nan
    if config.loglik:
        scores[LOGLIK], frame[LOGLIK] = loglik_on_split(
            loaded.model,
            loaded.arch,
            loaded.tokenizer,
            prepared,
            template=config.template,
            max_length=config.max_length,
            batch_size=config.batch_size,
            seed=config.seed,
            n_boot=config.n_boot,
            progress=config.progress,
        )
    else:
        scores[LOGLIK] = None
    result = EvalResult(
        scores=scores,
        generation=config.generation() | {"batch_size": config.batch_size},
        wall_s=time.perf_counter() - start,
        provenance=provenance(
            config,
            models={"evaluated": _model_identity(loaded.identity, config.adapter)},
            data=prepared.data_identity,
            seed=config.seed,
        ),
        predictions=frame,
        encode_report=prepared.report,
    )
    if config.out:
        result.save(config.out)
    return result


def _check_own_predictions(path_a: str | Path, path_b: str | Path) -> None:
    """Two different results that read one predictions file would compare a model with itself."""
    a, b = EvalResult.path(path_a), EvalResult.path(path_b)
    if a.resolve() == b.resolve():
        return  # the same result twice: plainly asked for
    jsonl_a, jsonl_b = (
        _recorded_predictions(p, read_json(p).get("predictions"), "") for p in (a, b)
    )
    if jsonl_a.exists() and jsonl_b.exists() and jsonl_a.samefile(jsonl_b):
        raise SumcircuitError(
            f"{str(a)!r} and {str(b)!r} read the same predictions file {str(jsonl_a)!r}, so "
            "the comparison would pair a model with itself; give each result its own predictions "
            "(evaluate each model with its own --out)"
        )


def compare_results(
    path_a: str | Path, path_b: str | Path, *, seed: int = 0, n_boot: int = 2000
) -> dict[str, Any]:
    """Paired bootstrap difference A − B per metric between two saved results, aligned by id.

    Returns :func:`sumcircuit.evaluation.rouge.compare`'s dict, each metric also carrying the
    arms' means ``a`` and ``b``, plus ``a``/``b`` (the result paths) under ``"files"``, and
    ``"loglik"``: the same ``{"mean_diff", "ci95", "p_value", "a", "b"}`` for the reference
    log-likelihood per token when both results have it, else None.
    The two results must cover exactly the same example ids, each once.
    """
    result_a, result_b = EvalResult.load(path_a), EvalResult.load(path_b)
    _check_own_predictions(path_a, path_b)
    frame_a, frame_b = result_a.predictions, result_b.predictions
    for path, frame in ((path_a, frame_a), (path_b, frame_b)):
        if len(frame) == 0:
            raise SumcircuitError(f"{str(path)!r} has no predictions to compare")
        duplicated = frame["id"][frame["id"].duplicated()].tolist()
        if duplicated:
            raise SumcircuitError(
                f"{str(path)!r} holds example id {duplicated[0]!r} more than once; "
                "ids must be unique to pair examples"
            )
    ids_a, ids_b = set(frame_a["id"]), set(frame_b["id"])
    if ids_a != ids_b:
        only_a, only_b = sorted(ids_a - ids_b), sorted(ids_b - ids_a)
        raise SumcircuitError(
            f"the two results cover different examples ({len(only_a)} ids only in "
            f"{str(path_a)!r}, e.g. {only_a[:2]}; {len(only_b)} only in {str(path_b)!r}, e.g. "
            f"{only_b[:2]}); evaluate both on the same data, split and --limit"
        )
    frame_a = frame_a.reset_index(drop=True)
    frame_b = frame_b.set_index("id").loc[frame_a["id"]].reset_index()
    out = compare(frame_a, frame_b, seed=seed, n_boot=n_boot)
    for metric in METRICS:
        out[metric] |= {"a": float(frame_a[metric].mean()), "b": float(frame_b[metric].mean())}
    out[LOGLIK] = None
    if result_a.loglik is not None and result_b.loglik is not None:
        a, b = frame_a[LOGLIK].to_numpy(), frame_b[LOGLIK].to_numpy()
        d = paired_bootstrap_diff(a, b, seed=seed, n_boot=n_boot)
        out[LOGLIK] = {
            "mean_diff": d.mean_diff,
            "ci95": list(d.ci95),
            "p_value": d.p_value,
            "a": float(a.mean()),
            "b": float(b.mean()),
        }
    out["files"] = {"a": str(path_a), "b": str(path_b)}
    out["seed"], out["n_boot"] = seed, n_boot
    return out
