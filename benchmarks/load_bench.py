"""Time loading a cached preset, and the two checksums of its weights.

Usage: .venv/bin/python benchmarks/load_bench.py [--model smollm2-135m] [--repeats 7]

Loads ``--model`` once (imports, and the one full check of a cache fetched before sampled
checksums), then times ``--repeats`` more loads on the CPU (median and minimum), the sampled
sha256 every load checks and the full sha256 ``sumcircuit models verify`` computes. To compare
two trees, run it with each tree's ``src`` on ``PYTHONPATH``, interleaved, against the same
``SUMCIRCUIT_CACHE`` (copy the cache with ``cp -rp`` to keep its modification times).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers.utils import logging as hf_logging

from sumcircuit.io import cache_dir, sha256_file
from sumcircuit.models.loader import load_model


def _times(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _line(name: str, times: list[float]) -> str:
    each = " ".join(f"{t:.3f}" for t in times)
    return f"{name}: median {statistics.median(times):.3f} s, min {min(times):.3f} s ({each})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    load_model(args.model, device="cpu")
    print(f"first load: {time.perf_counter() - start:.3f} s")
    print(_line("load_model", _times(lambda: load_model(args.model, device="cpu"), args.repeats)))
    weights = cache_dir("models", args.model) / "model.safetensors"
    try:  # absent in trees before sampled checksums
        from sumcircuit.io import sampled_sha256

        print(_line("sampled sha256", _times(lambda: sampled_sha256(weights), args.repeats)))
    except ImportError:
        pass
    print(_line("full sha256", _times(lambda: sha256_file(weights), 3)))


if __name__ == "__main__":
    main()
