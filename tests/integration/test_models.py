"""Loading models by path, the models CLI, the cache check, and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sumcircuit.cli import main
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import write_json
from sumcircuit.models.loader import cache_problem, load_model, weights_checksums
from sumcircuit.models.registry import resolve


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
def test_load_by_path_with_eager_attention(tiny_dirs, arch: str) -> None:
    loaded = load_model(str(tiny_dirs[arch]), attn_implementation="eager", device="cpu")
    assert loaded.arch.n_layers == 4 and loaded.identity["n_params"] > 0
    assert loaded.identity["sha256"] and len(loaded.identity["sha256"]) == 64
    ids = loaded.tokenizer("Hello there, general.", return_tensors="pt").input_ids
    out = loaded.model(input_ids=ids, output_attentions=True)
    assert len(out.attentions) == 4
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(1, 4, ids.shape[1]))


def test_models_info_cli_on_a_directory(tiny_dirs, capsys) -> None:
    assert main(["models", "info", str(tiny_dirs["llama"])]) == 0
    out = capsys.readouterr().out
    assert "layers       4" in out and "kv heads     2" in out and "llama" in out


def test_unknown_model_and_missing_path(capsys, tmp_path: Path) -> None:
    assert main(["models", "info", "./no/such/dir"]) == 2
    assert "does not exist; known presets: smollm2-135m, gemma3-270m" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SumcircuitError, match="holds no config.json"):
        resolve(str(tmp_path / "empty"))


def test_cache_check_detects_a_changed_file(tmp_path: Path) -> None:
    """Size, then the sampled sha256: a file rewritten in place with its size and mtime kept is
    caught; one merely touched (same content) is not."""
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x" * 100)
    write_json(tmp_path / "sumcircuit-cache.json", weights_checksums(weights))
    assert cache_problem(tmp_path) is None
    os.utime(weights, ns=(0, 0))  # touched: the content is what counts
    assert cache_problem(tmp_path) is None
    weights.write_bytes(b"y" * 99)  # truncated / corrupted
    assert "have 99 bytes, not the 100 fetched" in cache_problem(tmp_path)
    weights.write_bytes(b"y" * 100)
    os.utime(weights, ns=(0, 0))  # rewritten in place
    assert "changed after they were fetched" in cache_problem(tmp_path)
