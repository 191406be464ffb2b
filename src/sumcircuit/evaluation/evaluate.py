"""The evaluate stage: generate summaries for a split and score them with ROUGE and the loop
rate, and score the reference summaries' log-likelihood under the model.

``evaluate(EvaluateConfig) -> EvalResult``. Each prompt is prefilled once: that cache serves both
generation and the reference log-likelihood (:func:`sumcircuit.evaluation.generate.
generate_and_score`). The result is saved as one JSON file (``FILE``):
``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum`` (each ``{"f": mean F1, "ci95": [lo, hi]}``;
null with ``--no-generate``), ``loglik`` (``{"mean", "ci95": [lo, hi], "n_tokens", "wall_s"}``:
the mean log-likelihood per reference-summary token, see :mod:`sumcircuit.evaluation.loglik`;
null when not scored), ``loop_rate`` (``{"rate", "ci95", "n_loops", "ngram", "words"}``: the
share of summaries that repeat a word 3-gram, see :mod:`sumcircuit.evaluation.loops`; null with
``--no-generate``), ``n``, ``generation`` (the settings, decoding options included),
``wall_s``, ``provenance``, ``predictions`` (the name of the JSONL beside it), plus the
per-example predictions as JSONL at ``FILE`` with the suffix ``.predictions.jsonl`` (id,
document's first 300 characters, reference, prediction, the four per-example F1 scores,
``loglik`` and ``loops``; null where not measured). Both are written atomically. Results written
before ``loglik`` or ``loop_rate`` existed load with them None (``loops`` is recomputed from the
prediction).
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
from sumcircuit.evaluation.generate import decode, generate_and_score, score_predictions
from sumcircuit.evaluation.loglik import loglik_summary, reference_loglik, teacher_forced
from sumcircuit.evaluation.loops import loop_flags, loop_rate
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
    "LOOPS",
    "LOOP_RATE",
    "compare_results",
    "evaluate",
    "predictions_path",
    "read_predictions",
]

log = logging.getLogger(__name__)

DOCUMENT_CHARS = 300  # characters of each document kept in the predictions JSONL
LOGLIK = "loglik"  # mean log-likelihood per reference-summary token, per example and overall
LOOPS = "loops"  # per example: the prediction repeats a word 3-gram (1.0 / 0.0, NaN: none)
LOOP_RATE = "loop_rate"  # the share of predictions that loop, with its CI
PREDICTION_COLUMNS = ("id", "document", "reference", "prediction", *METRICS, LOGLIK, LOOPS)
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
    no_repeat_ngram_size: int = field(
        default=0,
        metadata=_help("never repeat a token n-gram of this size in prompt + summary (0 = off)"),
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata=_help("CTRL penalty on tokens already in prompt or summary (1.0 = off)"),
    )
    stop_at_newline: bool = field(
        default=True, metadata=_help("end a summary at its first newline (one-sentence data)")
    )
    bf16: bool = field(default=False, metadata=_help("bf16 autocast during generation"))
    generate: bool = field(
        default=True,
        metadata=_help(
            "generate summaries for ROUGE and the loop rate (--no-generate: loglik only)"
        ),
    )
    loglik: bool = field(
        default=True, metadata=_help("also score the reference's log-likelihood per token")
    )
    seed: int = field(default=0, metadata=_help("seed of torch and of the bootstrap"))
    n_boot: int = field(default=2000, metadata=_help("bootstrap resamples for the CIs"))
    progress: bool = field(default=True, metadata=_help("show a progress bar"))

    def __post_init__(self) -> None:
        super().__post_init__()  # types and choices of every field
        check_at_least(self, ("max_new_tokens", "num_beams", "n_boot"), 1)
        check_at_least(self, ("seed", "no_repeat_ngram_size"), 0)
        if not self.repetition_penalty > 0:
            raise ConfigError(
                "repetition_penalty",
                f"{{key}} must be above 0 (1.0 = off), got {self.repetition_penalty}",
            )
        if not (self.generate or self.loglik):
            raise ConfigError(
                "generate", "--no-generate with --no-loglik leaves nothing to evaluate; drop one"
            )
        if self.max_new_tokens >= self.max_length:
            raise ConfigError(
                "max_new_tokens",
                f"{{key}} ({self.max_new_tokens}) must be below --max-length "
                f"({self.max_length}) to leave room for the document",
            )

    def generation(self) -> dict[str, Any]:
        """The settings that decide the generated text (recorded in the result)."""
        keys = (
            "generate",
            "max_new_tokens",
            "num_beams",
            "no_repeat_ngram_size",
            "repetition_penalty",
            "max_length",
            "template",
            "stop_at_newline",
            "bf16",
        )
        return {k: getattr(self, k) for k in keys} | {"decoding": self.decoding()}

    def decoding(self) -> str:
        if not self.generate:
            return "none (reference log-likelihood only)"
        out = "greedy" if self.num_beams == 1 else f"beam search ({self.num_beams} beams)"
        if self.no_repeat_ngram_size:
            out += f", no repeated {self.no_repeat_ngram_size}-gram"
        if self.repetition_penalty != 1.0:
            out += f", repetition penalty {self.repetition_penalty:g}"
        return out


def predictions_path(result_path: str | Path) -> Path:
    """``eval.json`` -> ``eval.predictions.jsonl`` (beside it); a directory -> its
    ``result.predictions.jsonl``."""
    return EvalResult.path(result_path).with_suffix(PREDICTIONS_SUFFIX)


@dataclass
class EvalResult(StageResult):
    """ROUGE, loop rate and reference log-likelihood of one model on one split, with
    per-example predictions (``--no-generate``: the log-likelihood alone, ROUGE and loop rate
    None).

    ``save(target)``/``load(target)``: ``target`` is a directory (``DIR/result.json``, as in a
    study run) or the result JSON file itself (``sumcircuit evaluate --out eval.json``); the
    predictions JSONL lies beside the JSON.
    """

    FILE: ClassVar[str] = "result.json"
    STAGE: ClassVar[str] = "evaluate"
    FILE_OR_DIR: ClassVar[bool] = True

    # rouge.aggregate(): {metric: {"f", "ci95"} or None (not generated), "n": n}, plus
    # "loglik": {"mean", "ci95", "n_tokens", "wall_s"} and "loop_rate": loops.loop_rate(), each
    # None when not measured (or for a result written before it existed)
    scores: dict[str, Any]
    generation: dict[str, Any]
    wall_s: float
    provenance: dict[str, Any]
    # PREDICTION_COLUMNS, one row per example; NaN where not measured (prediction None)
    predictions: pd.DataFrame
    encode_report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """A result built without the reference log-likelihood or loop rate has them as None /
        NaN; the per-example ``loops`` follow from the predictions."""
        self.scores.setdefault(LOGLIK, None)
        self.scores.setdefault(LOOP_RATE, None)
        if LOGLIK not in self.predictions.columns:
            self.predictions = self.predictions.assign(**{LOGLIK: np.nan})
        if LOOPS not in self.predictions.columns:
            self.predictions = self.predictions.assign(**{LOOPS: _loop_column(self.predictions)})

    @property
    def n(self) -> int:
        return int(self.scores["n"])

    @property
    def generated(self) -> bool:
        """Whether summaries were generated (False: ``--no-generate``, no ROUGE, no loop rate)."""
        return self.scores[METRICS[0]] is not None

    @property
    def loop_rate(self) -> dict[str, Any] | None:
        """``{"rate", "ci95", "n_loops", "ngram", "words"}`` (:mod:`sumcircuit.evaluation.loops`),
        or None (``--no-generate``, or a result written before the loop rate existed)."""
        return self.scores.get(LOOP_RATE)

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
            LOOP_RATE: self.loop_rate,
            "n": self.n,
            "generation": self.generation,
            "wall_s": self.wall_s,
            "encode_report": self.encode_report,
            "provenance": self.provenance,
        }

    def _rows(self) -> list[dict[str, Any]]:
        """The predictions as JSON-ready dicts (NaN becomes null, ``loops`` true or false)."""
        rows = self.predictions[list(PREDICTION_COLUMNS)].to_dict(orient="records")
        for row in rows:
            for key in (*METRICS, LOGLIK, LOOPS):
                if row[key] is not None and not np.isfinite(row[key]):
                    row[key] = None
            if row[LOOPS] is not None:
                row[LOOPS] = bool(row[LOOPS])
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
        generated = data[METRICS[0]] is not None
        predictions = _prediction_frame(data["predictions"], generated=generated)
        loglik = data.get(LOGLIK)
        if loglik is not None and predictions[LOGLIK].isna().any():
            raise SumcircuitError(
                "some predictions lack the loglik score that the result's summary reports"
            )
        return cls(
            scores={m: data[m] for m in METRICS}
            | {LOGLIK: loglik, LOOP_RATE: data.get(LOOP_RATE), "n": data["n"]},
            generation=data.get("generation", {}),
            wall_s=float(data.get("wall_s", 0.0)),
            provenance=data.get("provenance", {}),
            predictions=predictions,
            encode_report=data.get("encode_report", {}),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per ROUGE metric (``f``: mean F1) when generated, a ``loop_rate`` row (``f``:
        the share of summaries that loop) when measured, and a ``loglik`` row (``f``: mean
        log-likelihood per reference token) when scored; columns metric, f, ci_low, ci_high."""
        rows = []
        if self.generated:
            rows += [(m, self.scores[m]["f"], *self.scores[m]["ci95"]) for m in METRICS]
        if self.loop_rate is not None:
            rows.append((LOOP_RATE, self.loop_rate["rate"], *self.loop_rate["ci95"]))
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
            _prediction_frame(rows, generated=data.get(METRICS[0]) is not None)
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


def _prediction_frame(rows: list[dict[str, Any]], *, generated: bool) -> pd.DataFrame:
    """The predictions frame; a row without ``loglik`` (not scored, or an older result) gets
    NaN there; ``loops`` is recomputed from the prediction. ``generated``: the result has ROUGE,
    so every row must have a prediction and its scores (else none may)."""
    frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    if frame["id"].isna().any():
        raise SumcircuitError("some predictions lack ids")
    scored = frame[list(METRICS)].notna()
    if generated and not (scored.all().all() and frame["prediction"].notna().all()):
        raise SumcircuitError("some predictions lack their text or ROUGE scores")
    if not generated and (scored.any().any() or frame["prediction"].notna().any()):
        raise SumcircuitError(
            "some rows hold a prediction or ROUGE scores that the result (not generated) lacks"
        )
    frame["id"] = frame["id"].astype(str)
    for column in (*METRICS, LOGLIK):
        frame[column] = pd.to_numeric(frame[column], errors="raise").astype(np.float64)
    frame[LOOPS] = _loop_column(frame)
    return frame


def _loop_column(frame: pd.DataFrame) -> np.ndarray:
    """Per row 1.0 when its prediction loops, 0.0 when not, NaN without a prediction."""
    out = np.full(len(frame), np.nan)
    if "prediction" not in frame.columns:
        return out
    texts = frame["prediction"]
    has = texts.notna().to_numpy()
    out[has] = loop_flags(texts[has].tolist())
    return out


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
    """Generate a summary for each example of ``config.split`` and score it with ROUGE and the
    loop rate; with ``config.loglik`` also score each reference summary's mean log-likelihood
    per token after the same prompt, from the same prefill (``--bf16`` generation excepted: the
    log-likelihood is scored without autocast, from a prefill of its own). With
    ``config.generate`` False, only the log-likelihood
    (:func:`sumcircuit.evaluation.loglik.reference_loglik`), after the prompt generation would
    use (the document still leaves ``max_new_tokens`` free).

    Saves the result to ``config.out`` when it is set. ``wall_s`` covers loading, generation and
    scoring.
    """
    start = time.perf_counter()
    check_max_length(model_shape(config.model), config.max_length)  # before any weights or data
    torch.manual_seed(config.seed)
    loaded = load_trained(config.model, config.adapter)
    tokenizer = loaded.tokenizer
    prepared = prepare_for(config, tokenizer, with_summary=False, reserve=config.max_new_tokens)
    log.info(
        "evaluating %s on %d examples of %s/%s",
        config.model,
        len(prepared),
        config.data,
        config.split,
    )
    forced = (
        teacher_forced(prepared, tokenizer, template=config.template, max_length=config.max_length)
        if config.loglik
        else None
    )
    scores: dict[str, Any] = dict.fromkeys(METRICS) | {"n": len(prepared), LOOP_RATE: None}
    frame = pd.DataFrame(
        {
            "id": prepared.ids,
            "reference": [e.summary for e in prepared.examples],
            "prediction": [None] * len(prepared),
        }
    ).assign(**dict.fromkeys(METRICS, np.nan))
    loglik, loglik_s = None, 0.0
    if config.generate:
        generated = generate_and_score(
            loaded.model,
            tokenizer,
            prepared.encoded,
            None if config.bf16 else forced,
            batch_size=config.batch_size,
            max_new_tokens=config.max_new_tokens,
            num_beams=config.num_beams,
            no_repeat_ngram_size=config.no_repeat_ngram_size,
            repetition_penalty=config.repetition_penalty,
            stop_at_newline=config.stop_at_newline,
            bf16=config.bf16,
            progress=config.progress,
        )
        predictions = [decode(tokenizer, ids, config.stop_at_newline) for ids in generated.ids]
        scores, frame = score_predictions(
            prepared, predictions, seed=config.seed, n_boot=config.n_boot
        )
        scores[LOOP_RATE] = loop_rate(predictions, seed=config.seed, n_boot=config.n_boot)
        loglik, loglik_s = generated.loglik, generated.loglik_s
    if forced is not None and loglik is None:  # not generated, or generated under autocast
        loglik_start = time.perf_counter()
        loglik = reference_loglik(
            loaded.model,
            tokenizer,
            prepared,
            template=config.template,
            max_length=config.max_length,
            batch_size=config.batch_size,
            progress=config.progress,
        )
        loglik_s = time.perf_counter() - loglik_start
    frame.insert(1, "document", [e.document[:DOCUMENT_CHARS] for e in prepared.examples])
    frame[LOGLIK] = np.nan if loglik is None else loglik
    scores[LOGLIK] = None
    if forced is not None and loglik is not None:
        scores[LOGLIK] = loglik_summary(
            loglik, forced, wall_s=loglik_s, seed=config.seed, n_boot=config.n_boot
        )
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
    arms' means ``a`` and ``b`` (None for every ROUGE metric when one result was evaluated with
    ``--no-generate``), plus ``a``/``b`` (the result paths) under ``"files"``, and
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
    out: dict[str, Any] = dict.fromkeys(METRICS) | {"n": len(frame_a)}
    if result_a.generated and result_b.generated:
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
