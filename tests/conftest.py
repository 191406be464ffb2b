"""Shared fixtures: tiny random models of each architecture shape, saved once per session, and a
small file of real XSum pairs (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY_ARCHS = ("gpt2", "llama", "gemma3")
XSUM_SAMPLE = Path(__file__).parent / "fixtures" / "xsum_sample.jsonl"


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved tiny model directory per architecture (loadable with ``load_model(str(dir))``)."""
    from sumcircuit.models.tiny import save_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {arch: save_tiny(arch, root / arch) for arch in (*TINY_ARCHS, "qwen2", "gpt_neox")}


@pytest.fixture(scope="session")
def gpt2_tok():
    from sumcircuit.models.tiny import gpt2_tokenizer

    return gpt2_tokenizer()


@pytest.fixture(scope="session")
def xsum_sample() -> str:
    """Path of 60 real XSum pairs shipped with the tests (see ``tests/fixtures/README.md``)."""
    assert XSUM_SAMPLE.is_file(), f"missing test fixture {XSUM_SAMPLE}"
    return str(XSUM_SAMPLE)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny models run fastest on one, and on a loaded 2-core machine two threads spin-wait on such
    small matrices (the paper-preset test took 60 s on one thread and 60-650 s on two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def run_device() -> torch.device:
    """Where the device tests (``tests/integration/test_on_device.py``) run:
    ``SUMCIRCUIT_TEST_DEVICE`` (``cpu`` by default; ``benchmarks/gpu_smoke.sh`` sets ``cuda``)."""
    name = os.environ.get("SUMCIRCUIT_TEST_DEVICE", "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        pytest.fail(f"SUMCIRCUIT_TEST_DEVICE={name!r} is not a torch device; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"SUMCIRCUIT_TEST_DEVICE={name!r} but torch sees no CUDA device")
    return device
