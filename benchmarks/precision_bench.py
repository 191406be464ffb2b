"""bf16 vs fp32, stage by stage: is bf16 faster on this CPU, and do the numbers agree?

Usage: .venv/bin/python benchmarks/precision_bench.py --finetuned RUN/finetune [--docs 16]
           [--scan-docs 8] [--json out.json]

Stages, each run twice in one process on the same XSum documents, fp32 then bf16:

- ``diff`` (``--dtype bfloat16``: both models' weights in bf16): seconds of the analysis loop
  (models loaded outside the timing), and agreement of the per-layer KL scores (Pearson, top-3
  layers) and of the fraction of heads that lose entropy;
- ``scan`` (exact layer patching, as validate and faithfulness patch; ``--dtype bfloat16``):
  seconds, Pearson of the per-layer sufficiency, m_ft − m_base;
- ``loglik`` (evaluation's held-out log-likelihood, bf16 autocast as training's validation uses):
  seconds, the largest per-document difference, and the base → fine-tuned gain in both;
- ``generate`` (greedy batched generation, bf16 autocast): seconds, greedy summaries identical to
  fp32's, ROUGE-L of each against the references.

Prints the CPU (model name, whether ``avx512_bf16`` is in /proc/cpuinfo) first: every figure
belongs to it. The training stages have their own measurement (``train_bench.py precision``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from sumcircuit.analysis.causal.exact import ExactConfig, exact_scan
from sumcircuit.analysis.diff.run import DiffConfig, run_diff
from sumcircuit.data.batching import prepare
from sumcircuit.evaluation.generate import generate_ids
from sumcircuit.evaluation.loglik import reference_loglik
from sumcircuit.evaluation.rouge import aggregate, score_pairs
from sumcircuit.models.loader import load_model

PRECISIONS = ("fp32", "bf16")
DTYPE = {"fp32": "float32", "bf16": "bfloat16"}


def cpu() -> dict[str, object]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line),
        platform.processor(),
    )
    return {"model": name, "avx512_bf16": "avx512_bf16" in text, "threads": torch.get_num_threads()}


def _pair(base: str, finetuned: str, docs: int, max_length: int, prec: str) -> dict:
    """The options diff and scan share: the pair, the documents and the precision."""
    return {
        "base": base,
        "finetuned": finetuned,
        "split": "validation",
        "limit": docs,
        "max_length": max_length,
        "dtype": DTYPE[prec],
        "n_boot": 200,
    }


def _times(fp32_s: float, bf16_s: float) -> dict:
    return {"fp32_s": fp32_s, "bf16_s": bf16_s, "bf16_over_fp32": bf16_s / fp32_s}


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_diff(base: str, finetuned: str, docs: int, max_length: int) -> dict:
    out = {}
    for prec in PRECISIONS:
        result = run_diff(DiffConfig(**_pair(base, finetuned, docs, max_length, prec)))
        out[prec] = {
            "seconds": result.summary["timing"]["seconds"],
            "kl": result.scores("layer", "kl").to_numpy(),
            "top3": result.layers_ranked[:3],
            "frac_down": result.summary["frac_heads_entropy_decreased"],
        }
    a, b = out["fp32"], out["bf16"]
    return {
        **_times(a["seconds"], b["seconds"]),
        "kl_pearson": float(stats.pearsonr(a["kl"], b["kl"])[0]),
        "kl_max_rel_diff": float(np.max(np.abs(a["kl"] - b["kl"]) / np.abs(a["kl"]))),
        "top3_fp32": a["top3"],
        "top3_bf16": b["top3"],
        "frac_heads_down_fp32": a["frac_down"],
        "frac_heads_down_bf16": b["frac_down"],
    }


def bench_scan(base: str, finetuned: str, docs: int, max_length: int) -> dict:
    out = {}
    for prec in PRECISIONS:
        pair = _pair(base, finetuned, docs, max_length, prec)
        result = exact_scan(ExactConfig(**pair, batch_size=4, level="layer"))
        out[prec] = {
            "seconds": result.timing["patching_s"],
            "suff": result.scores("layer").to_numpy(),
            "gain": result.m_ft - result.m_base,
        }
    a, b = out["fp32"], out["bf16"]
    return {
        **_times(a["seconds"], b["seconds"]),
        "sufficiency_pearson": float(stats.pearsonr(a["suff"], b["suff"])[0]),
        "sufficiency_max_abs_diff": float(np.max(np.abs(a["suff"] - b["suff"]))),
        "gain_fp32": a["gain"],
        "gain_bf16": b["gain"],
    }


def _autocast(prec: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16")


def bench_loglik(base: str, finetuned: str, docs: int, max_length: int) -> dict:
    models = {name: load_model(path) for name, path in (("base", base), ("ft", finetuned))}
    tok = models["base"].tokenizer
    prompts = prepare(
        "xsum", "test", tok, limit=docs, max_length=max_length, with_summary=False, reserve=40
    )
    out: dict[str, dict] = {}
    for prec in PRECISIONS:
        for name, loaded in models.items():
            with _autocast(prec):
                seconds, m = _timed(
                    lambda loaded=loaded: reference_loglik(
                        loaded.model,
                        tok,
                        prompts,
                        template="plain",
                        max_length=max_length,
                        progress=False,
                    )
                )
            out[f"{name}-{prec}"] = {"seconds": seconds, "m": m}
    t = {p: out[f"base-{p}"]["seconds"] + out[f"ft-{p}"]["seconds"] for p in PRECISIONS}
    gain = {p: float(np.mean(out[f"ft-{p}"]["m"] - out[f"base-{p}"]["m"])) for p in PRECISIONS}
    worst = max(
        float(np.max(np.abs(out[f"{n}-fp32"]["m"] - out[f"{n}-bf16"]["m"]))) for n in models
    )
    return {
        **_times(t["fp32"], t["bf16"]),
        "max_abs_doc_diff": worst,
        "mean_base_fp32": float(out["base-fp32"]["m"].mean()),
        "mean_base_bf16": float(out["base-bf16"]["m"].mean()),
        "gain_fp32": gain["fp32"],
        "gain_bf16": gain["bf16"],
    }


def bench_generate(model: str, docs: int, max_length: int) -> dict:
    loaded = load_model(model)
    prepared = prepare(
        "xsum",
        "test",
        loaded.tokenizer,
        limit=docs,
        max_length=max_length,
        with_summary=False,
        reserve=40,
    )
    refs = [e.summary for e in prepared.examples]
    out = {}
    for prec in PRECISIONS:
        seconds, ids = _timed(
            lambda prec=prec: generate_ids(
                loaded.model,
                loaded.tokenizer,
                prepared.encoded,
                batch_size=16,
                max_new_tokens=40,
                bf16=prec == "bf16",
                progress=False,
            )
        )
        texts = [
            loaded.tokenizer.decode(i, skip_special_tokens=True).strip().split("\n")[0] for i in ids
        ]
        rouge = aggregate(score_pairs(texts, refs), n_boot=200)
        out[prec] = {"seconds": seconds, "ids": ids, "rougeL": rouge["rougeL"]["f"]}
    same = sum(a == b for a, b in zip(out["fp32"]["ids"], out["bf16"]["ids"], strict=True))
    return {
        **_times(out["fp32"]["seconds"], out["bf16"]["seconds"]),
        "identical_summaries": f"{same}/{len(refs)}",
        "rougeL_fp32": out["fp32"]["rougeL"],
        "rougeL_bf16": out["bf16"]["rougeL"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--finetuned", required=True, help="a fine-tune of --base (a directory)")
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument(
        "--scan-docs", type=int, help="documents the patching scan reads (default: --docs // 2)"
    )
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stages", default="diff,scan,loglik,generate")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results: dict[str, object] = {"cpu": cpu(), "docs": args.docs, "max_length": args.max_length}
    print(json.dumps(results["cpu"]))
    runs = {
        "diff": lambda: bench_diff(args.base, args.finetuned, args.docs, args.max_length),
        "scan": lambda: bench_scan(
            args.base, args.finetuned, args.scan_docs or args.docs // 2, args.max_length
        ),
        "loglik": lambda: bench_loglik(args.base, args.finetuned, args.docs, args.max_length),
        "generate": lambda: bench_generate(args.base, args.docs, args.max_length),
    }
    for stage in args.stages.split(","):
        results[stage] = runs[stage]()
        print(stage, json.dumps(results[stage], default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
