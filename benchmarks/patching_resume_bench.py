"""Patched forwards resumed at the lowest patched layer vs recomputed from the embeddings.

``patch_effects`` runs each patched forward from the target model's clean residual stream at the
set's lowest patched layer (:mod:`sumcircuit.analysis.causal.resume`). The ``full`` arm is the
same sweep with every set starting at layer 0 (``resume_layer`` patched to return 0: exactly the
code path before resuming existed). Printed per arm: seconds (median over ``--repeats``,
arms alternating), forwards and layer-forwards skipped; and the largest relative difference of
any m between the arms. ``--probe-batching`` also times one forward of the documents against
one of the documents stacked twice (what batching two patched sets into one forward would cost).

    python benchmarks/patching_resume_bench.py --finetuned RUN/finetune --limit 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from unittest import mock

import numpy as np
import torch

from sumcircuit.analysis.causal import patching
from sumcircuit.analysis.causal.patching import Components, PairConfig, patch_effects, prepare_pair
from sumcircuit.data.batching import iter_batches
from sumcircuit.data.prompting import Batch

# Circuits of the kind validate and faithfulness patch (layers, heads), and scan-like single layers.
LAYER_SETS = ([0], [5], [15], [29], [2, 3, 5], [15, 21, 22])
HEAD_SETS = ([(10, 3), (20, 1)],)


def _sweep(pair, sets, batch_size: int, full: bool):
    start = time.perf_counter()
    if full:
        with mock.patch.object(patching, "resume_layer", lambda arch, comps: 0):
            effects = patch_effects(pair.base, pair.ft, pair.prepared, sets, batch_size=batch_size)
    else:
        effects = patch_effects(pair.base, pair.ft, pair.prepared, sets, batch_size=batch_size)
    return effects, time.perf_counter() - start


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _probe_batching(pair, batch: Batch, repeats: int) -> dict[str, float]:
    """Seconds of one forward of ``batch`` vs one of ``batch`` stacked twice along the rows."""
    twice = Batch(**{name: torch.cat([t, t]) for name, t in vars(batch).items()})
    times: dict[str, list[float]] = {"one": [], "stacked": []}
    for _ in range(repeats):
        for name, b in (("one", batch), ("stacked", twice)):
            start = time.perf_counter()
            patching.score(pair.base.model, pair.base.arch, b)
            times[name].append(time.perf_counter() - start)
    one, stacked = (statistics.median(times[k]) for k in ("one", "stacked"))
    return {"one_s": one, "stacked_s": stacked, "stacked_per_set_vs_one": stacked / 2 / one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--finetuned", required=True)
    parser.add_argument("--data", default="xsum")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--probe-batching", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    config = PairConfig(
        base=args.base,
        finetuned=args.finetuned,
        data=args.data,
        split=args.split,
        limit=args.limit,
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    pair = prepare_pair(config, stage="resume benchmark")
    arch = pair.base.arch
    sets = [Components.from_layers(arch, layers) for layers in LAYER_SETS]
    sets += [Components.from_heads(arch, heads) for heads in HEAD_SETS]
    seconds: dict[str, list[float]] = {"full": [], "resumed": []}
    effects = {}
    for _ in range(args.repeats):
        for arm in ("full", "resumed"):
            effects[arm], took = _sweep(pair, sets, args.batch_size, full=arm == "full")
            seconds[arm].append(took)
    full, resumed = effects["full"], effects["resumed"]
    out = {
        "args": vars(args),
        "n_docs": len(pair.prepared),
        "tokens": sum(len(e.input_ids) for e in pair.prepared.encoded),
        "sets": [c.describe() for c in sets],
        "full_s": statistics.median(seconds["full"]),
        "resumed_s": statistics.median(seconds["resumed"]),
        "seconds": seconds,
        "forwards": resumed.n_forwards,
        "layer_forwards_full": full.n_forwards * arch.n_layers,
        "layer_forwards_skipped": resumed.n_layer_forwards_skipped,
        "max_rel_diff": {
            name: _max_rel(getattr(resumed, name), getattr(full, name))
            for name in ("m_base", "m_ft", "m_suff", "m_nec")
        },
    }
    out["speedup"] = out["full_s"] / out["resumed_s"]
    if args.probe_batching:
        _, batch = next(
            iter_batches(pair.prepared.encoded, args.batch_size, pair.base.tokenizer.pad_token_id)
        )
        out["batching"] = _probe_batching(pair, batch, max(3, args.repeats))
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
