"""The evaluate stage: generate summaries for a split and score them with ROUGE.

``evaluate(EvaluateConfig) -> EvalResult``. The result is saved as one JSON file (``FILE``):
``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum`` (each ``{"f": mean F1, "ci95": [lo, hi]}``),
``n``, ``generation`` (the settings), ``wall_s``, ``provenance``, ``predictions`` (the name of
the JSONL beside it), plus the per-example predictions as JSONL at ``FILE`` with the suffix
``.predictions.jsonl`` (id, document's first 300 characters, reference, prediction and the four
per-example F1 scores). Both are written atomically.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
import torch

from sumcircuit.configs import DictConfig, check_at_least
from sumcircuit.data.batching import prepare_for
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.evaluation.generate import rouge_on_split
from sumcircuit.evaluation.rouge import METRICS, compare
from sumcircuit.io import sha256_file, write_json
from sumcircuit.models.trained import load_trained
from sumcircuit.provenance import provenance
from sumcircuit.results import StageResult, read_jsonl, read_result_json, reading, write_jsonl

__all__ = [
    "DOCUMENT_CHARS",
    "EvalResult",
    "EvaluateConfig",
    "compare_results",
    "evaluate",
    "predictions_path",
    "read_predictions",
]

log = logging.getLogger(__name__)

DOCUMENT_CHARS = 300  # characters of each document kept in the predictions JSONL
PREDICTION_COLUMNS = ("id", "document", "reference", "prediction", *METRICS)
PREDICTIONS_SUFFIX = ".predictions.jsonl"  # eval.json -> eval.predictions.jsonl


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class EvaluateConfig(DictConfig):
    """What to evaluate and how to generate."""

    model: str = field(default="smollm2-135m", metadata=_help("preset, local dir or HF id"))
    adapter: str | None = field(default=None, metadata=_help("LoRA adapter directory"))
    data: str = field(default="xsum", metadata=_help("dataset name, file or hf:NAME"))
    split: str = field(default="test", metadata=_help("split to evaluate"))
    out: str = field(default="", metadata=_help("result JSON file"))
    limit: int | None = field(default=None, metadata=_help("first N examples of the split"))
    batch_size: int = field(default=16, metadata=_help("prompts generated together"))
    max_new_tokens: int = field(default=48, metadata=_help("summary length cap in tokens"))
    num_beams: int = field(default=1, metadata=_help("1 = greedy, >1 = beam search"))
    max_length: int = field(
        default=512, metadata=_help("prompt + summary tokens (the document is cut)")
    )
    template: Literal["plain", "chat"] = field(default="plain", metadata=_help("prompt template"))
    stop_at_newline: bool = field(
        default=True, metadata=_help("end a summary at its first newline (one-sentence data)")
    )
    bf16: bool = field(default=False, metadata=_help("bf16 autocast during generation"))
    seed: int = field(default=0, metadata=_help("seed of torch and of the bootstrap"))
    n_boot: int = field(default=2000, metadata=_help("bootstrap resamples for the CIs"))
    document_field: str = field(default="document", metadata=_help("document column"))
    summary_field: str = field(default="summary", metadata=_help("summary column"))
    progress: bool = field(default=True, metadata=_help("show a progress bar"))

    def __post_init__(self) -> None:
        super().__post_init__()  # types and choices of every field
        check_at_least(
            self, ("batch_size", "max_new_tokens", "num_beams", "max_length", "n_boot", "limit"), 1
        )
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
    """ROUGE of one model on one split, with per-example predictions.

    ``save(target)``/``load(target)``: ``target`` is a directory (``DIR/result.json``, as in a
    study run) or the result JSON file itself (``sumcircuit evaluate --out eval.json``); the
    predictions JSONL lies beside the JSON.
    """

    FILE: ClassVar[str] = "result.json"
    STAGE: ClassVar[str] = "evaluate"
    FILE_OR_DIR: ClassVar[bool] = True

    scores: dict[str, Any]  # rouge.aggregate(): {metric: {"f", "ci95"}, "n": n}
    generation: dict[str, Any]
    wall_s: float
    provenance: dict[str, Any]
    predictions: pd.DataFrame  # PREDICTION_COLUMNS, one row per example
    encode_report: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.scores["n"])

    def _json(self) -> dict[str, Any]:
        """The result JSON's content, without the predictions (they go to the JSONL)."""
        return {
            **{m: self.scores[m] for m in METRICS},
            "n": self.n,
            "generation": self.generation,
            "wall_s": self.wall_s,
            "encode_report": self.encode_report,
            "provenance": self.provenance,
        }

    def to_dict(self) -> dict[str, Any]:
        """The result JSON's content, with ``predictions`` as a list of per-example dicts."""
        rows = self.predictions[list(PREDICTION_COLUMNS)].to_dict(orient="records")
        return self._json() | {"predictions": rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        missing = [k for k in (*METRICS, "n", "predictions") if k not in data]
        if missing:
            raise SumcircuitError(
                f"not a sumcircuit evaluate result (missing {', '.join(missing)})"
            )
        return cls(
            scores={m: data[m] for m in METRICS} | {"n": data["n"]},
            generation=data.get("generation", {}),
            wall_s=float(data.get("wall_s", 0.0)),
            provenance=data.get("provenance", {}),
            predictions=_prediction_frame(data["predictions"]),
            encode_report=data.get("encode_report", {}),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per metric: metric, f, ci_low, ci_high."""
        return pd.DataFrame(
            [
                {
                    "metric": m,
                    "f": self.scores[m]["f"],
                    "ci_low": self.scores[m]["ci95"][0],
                    "ci_high": self.scores[m]["ci95"][1],
                }
                for m in METRICS
            ]
        )

    def save(self, target: str | Path) -> Path:
        """Write the result JSON and the predictions JSONL beside it (atomically, the JSON
        last); returns the JSON's path."""
        path = self.path(target)
        jsonl = predictions_path(path)
        write_jsonl(jsonl, self.predictions[list(PREDICTION_COLUMNS)].to_dict(orient="records"))
        write_json(path, self._json() | {"predictions": jsonl.name})
        return path

    @classmethod
    def load(cls, target: str | Path) -> EvalResult:
        path, fix = cls.path(target), cls.fix(target)
        data = read_result_json(path, fix)
        name = data.get("predictions")
        jsonl = path.parent / name if isinstance(name, str) else predictions_path(path)
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


def _prediction_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    if frame[list(METRICS)].isna().any().any() or frame["id"].isna().any():
        raise SumcircuitError("some predictions lack ids or ROUGE scores")
    frame["id"] = frame["id"].astype(str)
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
    """Generate a summary for each example of ``config.split`` and score it with ROUGE.

    Saves the result to ``config.out`` when it is set. ``wall_s`` covers loading, generation and
    scoring.
    """
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    loaded = load_trained(config.model, config.adapter)
    prepared = prepare_for(
        config,
        loaded.tokenizer,
        with_summary=False,
        reserve=config.max_new_tokens,
        document_field=config.document_field,
        summary_field=config.summary_field,
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


def compare_results(
    path_a: str | Path, path_b: str | Path, *, seed: int = 0, n_boot: int = 2000
) -> dict[str, Any]:
    """Paired bootstrap difference A − B per metric between two saved results, aligned by id.

    Returns :func:`sumcircuit.evaluation.rouge.compare`'s dict, each metric also carrying the
    arms' means ``a`` and ``b``, plus ``a``/``b`` (the result paths) under ``"files"``.
    The two results must cover exactly the same example ids, each once.
    """
    frame_a, frame_b = EvalResult.load(path_a).predictions, EvalResult.load(path_b).predictions
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
    out["files"] = {"a": str(path_a), "b": str(path_b)}
    out["seed"], out["n_boot"] = seed, n_boot
    return out
