"""The evaluate stage: generate summaries for a split and score them with ROUGE.

``evaluate(EvaluateConfig) -> EvalResult``. The result is saved as one JSON file (``FILE``):
``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum`` (each ``{"f": mean F1, "ci95": [lo, hi]}``),
``n``, ``generation`` (the settings), ``wall_s``, ``provenance``, ``predictions`` (the name of
the JSONL beside it), plus the per-example predictions as JSONL at ``FILE`` with the suffix
``.predictions.jsonl`` (id, document's first 300 characters, reference, prediction and the four
per-example F1 scores). Both are written atomically.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from sumcircuit.configs import DictConfig, check_at_least
from sumcircuit.data.batching import prepare
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.evaluation.generate import rouge_on_split
from sumcircuit.evaluation.rouge import METRICS, compare
from sumcircuit.io import read_json, sha256_file, write_json, write_text
from sumcircuit.provenance import provenance
from sumcircuit.training.load import load_trained

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
    """``eval.json`` -> ``eval.predictions.jsonl`` (beside it)."""
    return Path(result_path).with_suffix(".predictions.jsonl")


@dataclass
class EvalResult:
    """ROUGE of one model on one split, with per-example predictions."""

    scores: dict[str, Any]  # rouge.aggregate(): {metric: {"f", "ci95"}, "n": n}
    generation: dict[str, Any]
    wall_s: float
    provenance: dict[str, Any]
    predictions: pd.DataFrame  # PREDICTION_COLUMNS, one row per example
    encode_report: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.scores["n"])

    def to_dict(self) -> dict[str, Any]:
        """The result JSON (without the predictions, which go to the JSONL)."""
        return {
            **{m: self.scores[m] for m in METRICS},
            "n": self.n,
            "generation": self.generation,
            "wall_s": self.wall_s,
            "encode_report": self.encode_report,
            "provenance": self.provenance,
        }

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

    def save(self, path: str | Path) -> Path:
        """Write the result JSON at ``path`` and the predictions JSONL beside it (atomically)."""
        path = Path(path)
        jsonl = predictions_path(path)
        lines = (
            json.dumps(row, ensure_ascii=False) + "\n"
            for row in self.predictions[list(PREDICTION_COLUMNS)].to_dict(orient="records")
        )
        write_text(jsonl, "".join(lines))
        write_json(path, self.to_dict() | {"predictions": jsonl.name})
        return path

    @classmethod
    def load(cls, path: str | Path) -> EvalResult:
        data = _read_result(path)
        return cls(
            scores={m: data[m] for m in METRICS} | {"n": data["n"]},
            generation=data.get("generation", {}),
            wall_s=float(data.get("wall_s", 0.0)),
            provenance=data.get("provenance", {}),
            predictions=read_predictions(path),
            encode_report=data.get("encode_report", {}),
        )


def _read_result(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SumcircuitError(f"result file {str(path)!r} does not exist; run sumcircuit evaluate")
    try:
        data = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SumcircuitError(f"{str(path)!r} is not valid JSON ({err})") from err
    missing = [k for k in (*METRICS, "n") if not isinstance(data, dict) or k not in data]
    if missing:
        raise SumcircuitError(
            f"{str(path)!r} is not a sumcircuit evaluate result (missing {', '.join(missing)})"
        )
    return data


def read_predictions(result_path: str | Path) -> pd.DataFrame:
    """The per-example predictions of a result file, as a frame with ``PREDICTION_COLUMNS``."""
    data = _read_result(result_path)
    jsonl = Path(result_path).parent / data.get("predictions", predictions_path(result_path).name)
    if not jsonl.is_file():
        raise SumcircuitError(
            f"the predictions file {str(jsonl)!r} of {str(result_path)!r} is missing; "
            "keep it beside the result JSON or rerun sumcircuit evaluate"
        )
    rows = []
    for lineno, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise SumcircuitError(
                f"{str(jsonl)!r} line {lineno} is not valid JSON ({err})"
            ) from err
    frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    if frame[list(METRICS)].isna().any().any() or frame["id"].isna().any():
        raise SumcircuitError(
            f"{str(jsonl)!r} lacks ids or ROUGE scores on some lines; rerun sumcircuit evaluate"
        )
    frame["id"] = frame["id"].astype(str)
    return frame


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
    prepared = prepare(
        config.data,
        config.split,
        loaded.tokenizer,
        limit=config.limit,
        max_length=config.max_length,
        template=config.template,
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
    frame_a, frame_b = read_predictions(path_a), read_predictions(path_b)
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
