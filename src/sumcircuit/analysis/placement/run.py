"""``placement(config)``: the placement curve — where LoRA helps most, per locator and size.

For each locator of ``config.wanted()`` and each k of ``config.sizes``: LoRA on its top-k layers
(:meth:`~sumcircuit.analysis.locate.registry.Ranking.top`), ``random_sets`` distinct random
k-layer sets (seeded by ``seed + k``) as the band, standard LoRA on every layer and the base
model (no adapter) as references. Every run has the same rank, targets, training pairs, steps,
lr and seed (:meth:`PlacementConfig.training`); with ``matched`` the top-k and random sets train
again at the rank that matches standard's trainable parameters
(:func:`~sumcircuit.training.adapters.equal_budget_rank`); with ``single_layer`` every layer
trains alone, the ground truth each locator's Spearman correlation is measured against.

A run is identified by its layer set and rank (:func:`~.result.run_key`): a set two locators
share trains once. Each run lives in ``OUT/runs/<key>/`` (a ``sumcircuit finetune`` folder: a
finished, intact run is skipped, a killed one resumes from its checkpoint) and its held-out
log-likelihoods in ``OUT/scores/<key>.json`` (reused while the run's config hash and the outcome
documents are the same), so an interrupted curve resumes where it stopped.

The outcome is the held-out log-likelihood per reference token (teacher-forced, no generation;
:func:`~sumcircuit.evaluation.loglik.reference_loglik`) on documents no locator and no training
run read (:mod:`.documents`); statistics in :mod:`.gap`.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sumcircuit.analysis.locate.registry import Ranking, Shape, locator, same_model
from sumcircuit.analysis.placement.config import PlacementConfig
from sumcircuit.analysis.placement.documents import Slice, check_disjoint, outcome_slice, readers
from sumcircuit.analysis.placement.gap import CurveStats, spearman
from sumcircuit.analysis.placement.result import (
    BASE,
    MATCHED,
    SAME_RANK,
    PlacementResult,
    run_key,
)
from sumcircuit.data.batching import Prepared, prepare
from sumcircuit.data.examples import Dataset
from sumcircuit.data.sources import load_dataset
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.evaluation.evaluate import EvaluateConfig
from sumcircuit.evaluation.loglik import reference_loglik
from sumcircuit.io import check_writable_dir, config_hash, read_json, write_json
from sumcircuit.models.loader import LoadedModel, load_model
from sumcircuit.models.shape import check_max_length, model_shape
from sumcircuit.models.trained import TrainingResult, check_trained_weights, load_trained
from sumcircuit.provenance import provenance
from sumcircuit.stats import random_sets
from sumcircuit.training.adapters import equal_budget_rank

log = logging.getLogger(__name__)

#: positions each outcome prompt leaves free, as ``evaluate`` does by default
OUTCOME_RESERVE = EvaluateConfig.max_new_tokens

__all__ = ["check_sizes", "placement"]

RUNS, SCORES = "runs", "scores"


@dataclass
class _Plan:
    """Every distinct run (key -> layers, rank) and which curve point reads which run."""

    runs: dict[str, tuple[list[int] | None, int]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)  # view, locator, k, layers, run
    band: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (view, k) -> runs
    single: dict[int, str] = field(default_factory=dict)  # layer -> run

    def add(self, layers: list[int] | None, rank: int) -> str:
        layers = None if layers is None else sorted(int(x) for x in layers)
        key = run_key(layers, rank)
        self.runs.setdefault(key, (layers, rank))
        return key


def placement(config: PlacementConfig) -> PlacementResult:
    """The placement curve of ``config`` (see the module docstring); training runs and scores
    are kept under ``config.out``, the result is returned (the caller saves it)."""
    start = time.perf_counter()
    if not config.out:
        raise SumcircuitError("--out is required: the directory the runs and the curve go to")
    out = check_writable_dir(config.out, "--out")
    shape = model_shape(config.model)
    check_max_length(shape, config.max_length)
    check_sizes(config, shape.n_layers)
    rankings = [
        locator(name).rank("layer", config.source_of(name), Shape(shape.n_layers, shape.n_heads))
        for name in config.wanted()
    ]
    dataset = load_dataset(
        config.data, document_field=config.document_field, summary_field=config.summary_field
    )
    read = readers(config, rankings)
    outcome = outcome_slice(config, read)
    # the ids of the outcome's slice before any model loads: an overlap is refused at once
    check_disjoint(outcome.ids(dataset), outcome, read, dataset)
    loaded = load_model(config.model)
    _check_base(rankings, loaded.identity)
    docs = prepare(
        config.data,
        outcome.split,
        loaded.tokenizer,
        limit=outcome.limit,
        offset=outcome.offset,
        max_length=config.max_length,
        template=config.template,
        # prompts as `evaluate` encodes them (the document cut to leave room for a summary of
        # its default length), so the outcome is `evaluate --no-generate`'s log-likelihood
        with_summary=False,
        reserve=OUTCOME_RESERVE,
        document_field=config.document_field,
        summary_field=config.summary_field,
    )
    plan = _plan(config, rankings, loaded, shape.n_layers)
    log.info(
        "placement: %d runs (%d locators, sizes %s, %d random sets each) scored on %d %s",
        len(plan.runs) + 1,
        len(rankings),
        config.sizes,
        config.random_sets,
        len(docs),
        outcome.describe(),
    )
    # the base model's scores depend on the model and how the documents are encoded
    options = config.training(None, config.rank, "").content_hash()
    base_hash = config_hash({"base": loaded.identity, "options": options})
    scores = {BASE: _score(out, BASE, base_hash, loaded, docs, config)}
    runs: dict[str, dict[str, Any]] = {
        BASE: {"layers": [], "rank": 0, "trainable_params": 0, "steps": 0, "wall_s": 0.0}
    }
    for key in tqdm(plan.runs, desc="placement runs", unit="run", disable=not config.progress):
        layers, rank = plan.runs[key]
        trained = _train(config, layers, rank, out / RUNS / key)
        with_adapter = load_trained(config.model, adapter_dir=out / RUNS / key)
        scores[key] = _score(out, key, trained.config_hash, with_adapter, docs, config)
        runs[key] = {
            "layers": layers,
            "rank": rank,
            "trainable_params": trained.trainable_params,
            "steps": len(trained.step_losses),
            "wall_s": trained.wall_s,
        }
    keys = list(runs)
    stats = CurveStats(
        np.column_stack([scores[k] for k in keys]), n_boot=config.n_boot, seed=config.seed
    )
    col = {k: i for i, k in enumerate(keys)}
    for key in keys:
        runs[key]["loglik"], runs[key]["loglik_ci95"] = stats.loglik(col[key])
    full = col[run_key(None, config.rank)]
    rows = []
    for point in plan.points:
        j, band = col[point["run"]], [col[k] for k in plan.band[(point["view"], point["k"])]]
        ll, ci = stats.loglik(j)
        gap, gap_ci = stats.gap_closed(j, band, full)
        rows.append(
            point
            | {
                "rank": runs[point["run"]]["rank"],
                "loglik": ll,
                "loglik_ci95": ci,
                "percentile": stats.percentile(j, band),
                "gap_closed": gap,
                "gap_closed_ci95": gap_ci,
                "trainable_params": runs[point["run"]]["trainable_params"],
            }
        )
    random_rows = [
        {
            "view": view,
            "k": k,
            "runs": band,
            "layers": [runs[b]["layers"] for b in band],
            "loglik": [runs[b]["loglik"] for b in band],
            "mean": float(np.mean([runs[b]["loglik"] for b in band])),
        }
        for (view, k), band in plan.band.items()
    ]
    return PlacementResult(
        model=dict(loaded.identity),
        n_layers=shape.n_layers,
        sizes=list(config.sizes),
        rank=config.rank,
        runs=runs,
        per_doc={k: [float(x) for x in scores[k]] for k in keys},
        rows=rows,
        random=random_rows,
        documents=_documents(outcome, docs, read, dataset),
        locators={r.name: r.source() | {"split": r.split, "limit": r.limit} for r in rankings},
        single_layer=_single_layer(plan, runs, rankings),
        wall_s=time.perf_counter() - start,
        config=config.to_dict(),
        provenance=provenance(
            config.to_dict(),
            models={"base": loaded.identity},
            data={"outcome": docs.data_identity, "training": _training_identity(config, dataset)},
            seed=config.seed,
        ),
    )


def check_sizes(config: PlacementConfig, n_layers: int) -> None:
    """Sizes below the model's layer count (all layers is the standard run), and enough
    distinct random sets at each."""
    for k in config.sizes:
        if not 1 <= k < n_layers:
            raise ConfigError(
                "sizes",
                f"{{key}} holds {k}; the model has {n_layers} layers, so sizes lie in "
                f"1..{n_layers - 1} (all layers is the standard run, always trained)",
            )
        distinct = math.comb(n_layers, k)
        if config.random_sets > distinct:
            raise ConfigError(
                "random_sets",
                f"{{key}}={config.random_sets} asks for more random sets than exist: {n_layers} "
                f"layers hold {distinct} distinct sets of {k}; lower it or drop size {k}",
            )


def _check_base(rankings: list[Ranking], identity: dict[str, Any]) -> None:
    """Refuse a ranking computed on another base model than the one the curve adapts."""
    for ranking in rankings:
        recorded = (ranking.models or {}).get("base") or {}
        if recorded and not same_model(recorded, identity):
            raise SumcircuitError(
                f"the {ranking.name} ranking in {ranking.directory!r} was computed on base model "
                f"{recorded.get('name')!r}, not on {identity.get('name')!r}, which the curve "
                "adapts; rank with results of the same base model"
            )


def _plan(
    config: PlacementConfig, rankings: list[Ranking], loaded: LoadedModel, n_layers: int
) -> _Plan:
    plan = _Plan()
    plan.add(None, config.rank)  # standard LoRA: the reference the gap is closed towards
    pool = list(range(n_layers))
    views = [(SAME_RANK, lambda k: config.rank)]
    if config.matched:
        views.append((MATCHED, lambda k: _matched_rank(config, loaded, k)))
    for view, rank_of in views:
        for k in config.sizes:
            rank = rank_of(k)
            drawn = random_sets(pool, k, config.random_sets, (), seed=config.seed + k)
            plan.band[(view, k)] = [plan.add(list(s), rank) for s in drawn]
            for ranking in rankings:
                layers = sorted(int(x) for x in ranking.top(k))
                key = plan.add(layers, rank)
                plan.points.append(
                    {"view": view, "locator": ranking.name, "k": k, "layers": layers, "run": key}
                )
    if config.single_layer:
        plan.single = {layer: plan.add([layer], config.rank) for layer in pool}
    return plan


def _matched_rank(config: PlacementConfig, loaded: LoadedModel, k: int) -> int:
    """The rank at which LoRA on k layers has standard LoRA's trainable parameters (every layer
    has the same modules, so any k-set gives the same rank)."""
    arch = loaded.arch
    modules = arch.lora_targets(list(range(k)), config.targets)
    rank, _ = equal_budget_rank(loaded.model, arch, modules, [], config.rank, config.targets)
    return rank


def _train(
    config: PlacementConfig, layers: list[int] | None, rank: int, folder: Path
) -> TrainingResult:
    """One run, trained unless ``folder`` holds it finished and intact (then read)."""
    from sumcircuit.training.loop import finetune

    if TrainingResult.path(folder).exists():
        try:
            check_trained_weights(folder)
        except SumcircuitError as err:
            log.warning("%s; training that run again", err)
            shutil.rmtree(folder)
    return finetune(config.training(layers, rank, str(folder)))


def _score(
    out: Path,
    key: str,
    config_hash: str,
    loaded: LoadedModel,
    docs: Prepared,
    config: PlacementConfig,
) -> np.ndarray:
    """Held-out log-likelihood per reference token of every outcome document under one run,
    read from ``OUT/scores/<key>.json`` when it scored the same run on the same documents."""
    path = out / SCORES / f"{key}.json"
    if path.is_file():
        try:
            saved = read_json(path)
            if saved["config_hash"] == config_hash and saved["ids"] == docs.ids:
                return np.asarray(saved["loglik"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s is damaged; scoring run %s again", path, key)
    values = reference_loglik(
        loaded.model,
        loaded.tokenizer,
        docs,
        template=config.template,
        max_length=config.max_length,
        progress=False,
    )
    write_json(path, {"config_hash": config_hash, "ids": docs.ids, "loglik": values.tolist()})
    return values


def _single_layer(
    plan: _Plan, runs: dict[str, dict[str, Any]], rankings: list[Ranking]
) -> dict[str, Any] | None:
    """Each layer alone (the ground truth) and each locator's Spearman correlation with it."""
    if not plan.single:
        return None
    truth = pd.Series({layer: runs[key]["loglik"] for layer, key in plan.single.items()})
    return {
        "loglik": {str(layer): value for layer, value in truth.items()},
        "spearman": {r.name: spearman(r.scores.rename(index=int), truth) for r in rankings},
    }


def _documents(
    outcome: Slice, docs: Prepared, read: list[Slice], dataset: Dataset
) -> dict[str, Any]:
    """The outcome documents (their ids), every reader's slice and the data set's identity."""
    return {
        "outcome": outcome.to_dict() | {"ids": list(docs.ids), "n": len(docs)},
        "readers": [s.to_dict() for s in read],
        "data": dataset.identity(),
    }


def _training_identity(config: PlacementConfig, dataset: Dataset) -> dict[str, Any]:
    """The training pairs: the first ``limit`` of the train split, by id."""
    ids = [e.id for e in dataset.split("train")[: config.limit]]
    return dataset.identity() | {"split": "train", "limit": config.limit, "ids": ids}
