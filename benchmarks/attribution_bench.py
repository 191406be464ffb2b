"""Attribution patching vs exact patching on a real model pair, and the time of each.

For every layer (all heads + MLP patched together) and every head alone, the exact sufficiency
of ``scan`` (the base model with that component patched in from the fine-tuned model, one
forward per component) against the attribution estimates of ``atp``, ``ig-activations`` and
``ig-weights`` on the same documents. Both are normalised the same way: Σ_d effect_d /
Σ_d (m_ft,d − m_base,d). Printed: Pearson and Kendall correlation, top-10 overlap (by signed
score; :func:`sumcircuit.analysis.causal.agreement.agreement`) and seconds, per level; the exact head
scan's time against each method's time for all heads and MLPs. A JSON copy goes to ``--json``.

    python benchmarks/attribution_bench.py --finetuned RUN/finetune/full --limit 8
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from sumcircuit.analysis.causal.agreement import agreement
from sumcircuit.analysis.causal.attribution import METHODS, attribute
from sumcircuit.analysis.causal.patching import Components, PairConfig, patch_effects, prepare_pair


def _cpu() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    kind = "AVX-512 with avx512_bf16" if "avx512_bf16" in flags else "AVX2, no avx512_bf16"
    name = next((ln.split(":")[1].strip() for ln in flags.splitlines() if "model name" in ln), "")
    return f"{name or platform.processor()} ({kind}), {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--finetuned", required=True)
    parser.add_argument("--data", default="xsum")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--ig-steps", type=int, default=8)
    parser.add_argument("--skip-head-scan", action="store_true", help="layers only (faster)")
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
    pair = prepare_pair(config, stage="attribution benchmark")
    arch = pair.base.arch
    L, H = arch.n_layers, arch.n_heads
    out: dict = {"cpu": _cpu(), "args": vars(args), "n_docs": len(pair.prepared), "levels": {}}
    print(f"# {out['cpu']}; {len(pair.prepared)} documents, {L} layers x {H} heads")

    levels = {"layer": [Components.from_layers(arch, [layer]) for layer in range(L)]}
    if not args.skip_head_scan:
        levels["head"] = [
            Components.from_heads(arch, [(layer, h)]) for layer in range(L) for h in range(H)
        ]
    exact: dict[str, np.ndarray] = {}
    exact_s: dict[str, float] = {}
    for level, sets in levels.items():
        start = time.perf_counter()
        effects = patch_effects(
            pair.base, pair.ft, pair.prepared, sets, batch_size=args.batch_size, necessity=False
        )
        exact_s[level] = time.perf_counter() - start
        den = (effects.m_ft - effects.m_base).sum()
        exact[level] = (effects.m_suff - effects.m_base[:, None]).sum(0) / den
        print(f"exact {level} scan: {exact_s[level]:.1f} s ({effects.n_forwards} forwards)")

    for method in METHODS:
        start = time.perf_counter()
        att = attribute(
            pair.base,
            pair.ft,
            pair.prepared,
            batch_size=args.batch_size,
            method=method,
            steps=args.ig_steps,
        )
        seconds = time.perf_counter() - start
        den = (att.m_ft - att.m_base).sum()
        estimates = {
            "layer": att.layers_suff.sum(0) / den,
            "head": att.heads_suff.sum(0).reshape(-1) / den,
        }
        for level in levels:
            row = agreement(exact[level], estimates[level], k=10)
            row.update(seconds=seconds, exact_seconds=exact_s[level])
            row["speedup_vs_exact_head_scan"] = exact_s.get("head", float("nan")) / seconds
            out["levels"].setdefault(level, {})[method] = row
            print(
                f"{level:5s} {method:15s} pearson {row['pearson']:+.3f} kendall "
                f"{row['kendall']:+.3f} top10 {row['top10_overlap']:.1f}  {seconds:7.1f} s "
                f"(exact {level} scan {exact_s[level]:.1f} s)"
            )
        out.setdefault("estimates", {})[method] = {k: v.tolist() for k, v in estimates.items()}
    out["exact"] = {k: v.tolist() for k, v in exact.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
