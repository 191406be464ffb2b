"""Attribution patching vs exact patching on a real model pair, and the time of each.

For every layer (its node: the decoder block's write to the residual stream) and every head
alone, the exact sufficiency of ``sumcircuit exact`` (the base model with that node patched in
from the fine-tuned model, one forward per node) against the attribution estimates of
``--methods`` (default ``atp``, whose two end gradients also give ``atp-trapezoid``, and
``ig-weights``) on the same documents. Both are normalised the same way: Σ_d effect_d /
Σ_d (m_ft,d − m_base,d). Printed: Pearson and Kendall correlation, top-k overlap (by signed
score; :func:`sumcircuit.analysis.causal.agreement.agreement`) and seconds, per level; the exact
head scan's time against each method's time for all nodes. ``--old-layer-node`` adds the layer
node used before issue 23 on the same documents: exact patching of the layer's heads (o_proj
input) and MLP output together, estimated by the sum of the heads' and the MLP's scores. A JSON
copy goes to ``--json``.

    python benchmarks/attribution_bench.py --finetuned RUN/finetune --limit 8 --old-layer-node
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
    parser.add_argument("--methods", default="atp,ig-weights", help="comma-separated")
    parser.add_argument("--top", type=int, default=3, help="k of the top-k overlap")
    parser.add_argument(
        "--old-layer-node", action="store_true", help="also the heads+MLP layer node (pre issue 23)"
    )
    parser.add_argument(
        "--ft-scale",
        type=float,
        default=1.0,
        help="compare with θ_base + s (θ_ft − θ_base) instead of the fine-tune: a small s shows "
        "whether the gap to exact patching is the estimator's or the fine-tune's nonlinearity",
    )
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
    if args.ft_scale != 1.0:
        with torch.no_grad():
            params = zip(pair.ft.model.parameters(), pair.base.model.parameters(), strict=True)
            for p_ft, p_base in params:
                p_ft.copy_(torch.lerp(p_base, p_ft, args.ft_scale))
    arch = pair.base.arch
    L, H = arch.n_layers, arch.n_heads
    out: dict = {"cpu": _cpu(), "args": vars(args), "n_docs": len(pair.prepared), "levels": {}}
    print(f"# {out['cpu']}; {len(pair.prepared)} documents, {L} layers x {H} heads")

    levels = {"layer": [Components.from_layers(arch, [layer]) for layer in range(L)]}
    if args.old_layer_node:
        levels["layer-old"] = [
            Components(heads=frozenset((layer, h) for h in range(H)), mlps=frozenset({layer}))
            for layer in range(L)
        ]
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

    methods = args.methods.split(",")
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
    k = args.top
    for method in methods:
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
        ends = {"suff": (att.layers_suff, att.heads_suff, att.mlps_suff)}
        if method == "atp":  # the trapezoid: the mean of the two end gradients, no extra pass
            ends["nec"] = (att.layers_nec, att.heads_nec, att.mlps_nec)
        variants = {method: [ends["suff"]]}
        if method == "atp":
            variants["atp-trapezoid"] = [ends["suff"], ends["nec"]]
        for name, parts in variants.items():
            layers, heads, mlps = (sum(p[i] for p in parts) / len(parts) for i in range(3))
            estimates = {
                "layer": layers.sum(0) / den,
                "layer-old": (heads.sum(-1) + mlps).sum(0) / den,
                "head": heads.sum(0).reshape(-1) / den,
            }
            for level in levels:
                row = agreement(exact[level], estimates[level], k=k)
                row.update(seconds=seconds, exact_seconds=exact_s[level])
                row["speedup_vs_exact_head_scan"] = exact_s.get("head", float("nan")) / seconds
                out["levels"].setdefault(level, {})[name] = row
                print(
                    f"{level:9s} {name:15s} pearson {row['pearson']:+.3f} kendall "
                    f"{row['kendall']:+.3f} top{k} {row[f'top{k}_overlap']:.2f}  {seconds:7.1f} s "
                    f"(exact {level} scan {exact_s[level]:.1f} s)"
                )
            out.setdefault("estimates", {})[name] = {
                level: estimates[level].tolist() for level in levels
            }
    out["exact"] = {k: v.tolist() for k, v in exact.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
