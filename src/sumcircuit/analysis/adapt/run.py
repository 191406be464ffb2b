"""The ``adapt`` stage: where a low-rank update of the base model can lower the summary loss.

From the base model and training pairs only (the train split; nothing a scoring stage reads),
per layer, summed over the layer's LoRA target matrices (the arm's ``targets``):

- ``gradients`` (:mod:`~sumcircuit.analysis.adapt.gradients`): ``rgn``, ``fisher`` and
  ``grad-energy`` from one forward and backward pass per batch of the first ``limit`` pairs;
- ``probe`` (:mod:`~sumcircuit.analysis.adapt.probe`): ``probe-norm`` and ``probe-act`` of a
  ``probe_steps``-step LoRA run on every layer, trained into ``OUT/probe``;
- ``spectrum`` (:mod:`~sumcircuit.analysis.adapt.spectrum`): ``spectrum-snr``, from the weights.

Each is a layer-level adaptation locator (:mod:`sumcircuit.analysis.locate.adapt`): higher is a
better place to adapt. The result records the model's identity and the ids of every document
each part read.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from sumcircuit.analysis.adapt.config import AdaptConfig
from sumcircuit.analysis.adapt.gradients import gradient_scores
from sumcircuit.analysis.adapt.probe import run_probe
from sumcircuit.analysis.adapt.result import COLUMNS, PARTS, AdaptResult
from sumcircuit.analysis.adapt.spectrum import layer_snr, spectrum_snr
from sumcircuit.analysis.adapt.targets import Target, lora_matrices, per_layer, weights
from sumcircuit.data.batching import iter_batches, prepare_for
from sumcircuit.layout import RunLayout
from sumcircuit.models.loader import load_model
from sumcircuit.provenance import provenance

log = logging.getLogger(__name__)

__all__ = ["AdaptConfig", "run_adapt"]


def run_adapt(config: AdaptConfig, out: str | Path) -> AdaptResult:
    """Compute ``config.parts`` for every layer of ``config.model``; the probe trains into
    ``out/probe``. Returns the result (not yet saved)."""
    out = Path(out)
    start = time.perf_counter()
    loaded = load_model(config.model, device=config.device)  # float32
    arch = loaded.arch
    matrices = lora_matrices(arch, config.targets)
    columns: dict[str, np.ndarray] = {}  # score column -> (M,) per matrix
    doc_ids: dict[str, list[str]] = {}
    data: dict[str, Any] = {}  # the train split's identity, once a part reads it
    timing: dict[str, float] = {"load_s": time.perf_counter() - start}
    probe_record: dict[str, Any] = {}
    n_layers = arch.n_layers

    if "gradients" in config.parts:
        t0 = time.perf_counter()
        train = prepare_for(config, loaded.tokenizer, split="train")
        batches = iter_batches(train.encoded, config.batch_size, loaded.tokenizer.pad_token_id)
        grads = gradient_scores(
            loaded.model,
            weights(loaded.model, matrices),
            (batch for _, batch in batches),
            config.rank,
            progress=config.progress,
            total=-(-len(train) // config.batch_size),
        )
        columns |= {"rgn": grads.rgn, "fisher": grads.fisher, "grad_energy": grads.grad_energy}
        doc_ids["gradients"] = list(train.ids)
        data = dict(train.data_identity)
        timing |= {"gradients_s": time.perf_counter() - t0, "gradient_batches": grads.n_batches}
        timing["gradient_mean_loss"] = grads.mean_loss

    if "spectrum" in config.parts:
        t0 = time.perf_counter()
        snr = [spectrum_snr(w) for w in weights(loaded.model, matrices)]
        columns["spectrum_snr"] = np.array(snr)
        timing["spectrum_s"] = time.perf_counter() - t0

    weight_norms = [float(w.detach().double().norm()) for w in weights(loaded.model, matrices)]
    identity = loaded.identity
    del loaded  # the probe loads its own copy to train

    if "probe" in config.parts:
        t0 = time.perf_counter()
        folder = out / RunLayout.PROBE
        probe = run_probe(config, folder, matrices)
        columns |= {"probe_norm": probe.norm, "probe_act": probe.act}
        doc_ids["probe"] = probe.doc_ids
        data = data or dict(probe.data_identity)
        probe_record = {
            "directory": RunLayout.PROBE,  # relative to the result's folder
            "steps": probe.steps,
            "losses": probe.losses,
            "n_tokens": probe.n_tokens,
            "rank": config.rank,
            "alpha": config.alpha,
            "lr": config.lr,
            "targets": list(config.targets),
        }
        timing["probe_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - start

    computed = [p for p in PARTS if p in config.parts]
    return AdaptResult(
        n_layers=n_layers,
        parts=computed,
        layer_rows=_layer_rows(columns, matrices, n_layers),
        matrix_rows=_matrix_rows(columns, matrices, weight_norms),
        doc_ids=doc_ids,
        probe=probe_record,
        timing=timing,
        provenance=provenance(
            config, models={"base": identity}, data=_read(config, data), seed=config.seed
        ),
    )


def _read(config: AdaptConfig, identity: dict[str, Any]) -> dict[str, Any]:
    """The data record: the train split's identity and ``limit``, the longest prefix of it any
    part read (None: all of it); empty when only the weights were read."""
    prefixes = [config.limit] * ("gradients" in config.parts)
    prefixes += [config.probe_pairs] * ("probe" in config.parts)
    if not prefixes:
        return {}
    limit = None if None in prefixes else max(p for p in prefixes if p is not None)
    return identity | {"split": "train", "limit": limit}


def _layer_rows(
    columns: dict[str, np.ndarray], matrices: list[Target], n_layers: int
) -> list[dict[str, Any]]:
    """One row per layer: the sum over its matrices (spectrum-snr: its kind-normalised mean)."""
    per = {
        name: layer_snr(values, matrices, n_layers)
        if name == COLUMNS["spectrum-snr"]
        else per_layer(values, matrices, n_layers)
        for name, values in columns.items()
    }
    return [
        {"layer": layer, **{name: float(v[layer]) for name, v in per.items()}}
        for layer in range(n_layers)
    ]


def _matrix_rows(
    columns: dict[str, np.ndarray], matrices: list[Target], weight_norms: list[float]
) -> list[dict[str, Any]]:
    return [
        {
            "module": t.module,
            "layer": t.layer,
            "kind": t.kind,
            "weight_norm": weight_norms[i],
            **{name: float(values[i]) for name, values in columns.items()},
        }
        for i, t in enumerate(matrices)
    ]
