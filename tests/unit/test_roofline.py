"""benchmarks/roofline.py: the FLOP counts on a tiny config, by hand and against torch's own
FLOP counter, and how a run's stage times are read."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sumcircuit.models.tiny import tiny_config, tiny_model

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "roofline.py"
_spec = importlib.util.spec_from_file_location("roofline", _PATH)
roofline = importlib.util.module_from_spec(_spec)
sys.modules["roofline"] = roofline  # dataclasses look their module up while the class is built
_spec.loader.exec_module(roofline)

# L=2 layers, d=4, H=2 heads, K=1 KV head, h=2, d_ff=8, V=10, gated MLP:
# P = 2·4·(2·2) + 2·4·(1·2) + 3·4·8 = 32 + 16 + 96 = 144 matmul weights per layer
DIMS = roofline.ModelDims(
    n_layers=2, hidden=4, n_heads=2, n_kv_heads=1, head_dim=2, d_ff=8, vocab=10
)


def test_layer_params_by_hand() -> None:
    assert DIMS.layer_params == 144
    assert DIMS.attn_width == 4


def test_forward_by_hand() -> None:
    # one row of 3 tokens, logits at 2 positions:
    # 2·144·2·3 = 1728 (matmuls) + 2·2·3²·4 = 144 (causal attention) + 2·4·10·2 = 160 (head)
    assert roofline.forward_flops(DIMS, [3], 2) == 1728 + 144 + 160
    # rows add up; the head counts its logit rows once
    assert roofline.forward_flops(DIMS, [3, 3], 4) == 2 * (1728 + 144) + 320


def test_backward_by_hand() -> None:
    # everything trains: twice the forward (activation and weight gradients)
    full = roofline.backward_flops(DIMS, [3], 2, lowest_layer=0, weight_grads=True)
    assert full == 3456 + 288 + 320 == 2 * roofline.forward_flops(DIMS, [3], 2)
    # frozen weights, gradients down to layer 1 only: 2·144·1·3 + 2·2·1·9·4 + 2·4·10·2
    assert roofline.backward_flops(DIMS, [3], 2, lowest_layer=1, weight_grads=False) == (
        864 + 144 + 160
    )


def test_train_step_by_hand() -> None:
    fwd = roofline.forward_flops(DIMS, [3], 2)
    assert roofline.train_step_flops(DIMS, [3], 2, full=True) == 3 * fwd
    # LoRA on layer 1 with 5 adapter weights: forward + backward from layer 1 + 6·5·3
    assert (
        roofline.train_step_flops(DIMS, [3], 2, full=False, lowest_layer=1, adapter_params=5)
        == fwd + 1168 + 90
    )


def test_generation_by_hand() -> None:
    # prompts of 3 and 5 tokens: prefill 2 and 4 tokens alone, one logit row each
    # (2·144·2·2 + 2·2·4·4 + 80 = 1296; 2·144·2·4 + 2·2·16·4 + 80 = 2640);
    # 2 steps x 2 rows, each 2·144·2 + 4·2·10·4 (static cache 5 + 1 + 4) + 2·4·10 = 976
    assert roofline.generation_flops(DIMS, [3, 5], steps=2, max_new_tokens=4) == (
        1296 + 2640 + 4 * 976
    )


def test_continuation_by_hand() -> None:
    # 2 new tokens after a cache of 3: 2·144·2·2 = 1152 (matmuls)
    # + 4·2·4·(2·3 + 2²/2) = 256 (attention over the cache and causally) + 2·4·10·2 = 160 (head)
    assert roofline.continuation_flops(DIMS, prefix=3, tokens=2) == 1152 + 256 + 160
    # without a cache it is a forward of one row with logits at every position
    assert roofline.continuation_flops(DIMS, 0, 3) == roofline.forward_flops(DIMS, [3], 3)


def test_diff_metric_work_by_hand() -> None:
    # per layer: 2·2·R·T·(H·h) = 2·2·2·3·4 = 96 and 3·2·R·d² = 3·2·2·16 = 192
    assert roofline.diff_metric_flops(DIMS, width=3, region_rows=2) == 2 * (96 + 192)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
def test_forward_matches_torch_flop_counter(arch: str) -> None:
    """torch counts every matmul of a real forward (eager attention over all T² scores, logits
    at every position): our count plus the causal half we leave out must equal it."""
    model = tiny_model(arch, attn_implementation="eager")
    dims = roofline.ModelDims.from_config(model.config)
    assert dims == roofline.ModelDims.from_config(tiny_config(arch))
    rows, t = 2, 12
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=torch.randint(0, 1000, (rows, t)))
    skipped_half = rows * 2 * dims.n_layers * t * t * dims.attn_width
    assert roofline.forward_flops(dims, [t] * rows, rows * t) + skipped_half == (
        counter.get_total_flops()
    )


def test_peak_shapes_are_the_models_own() -> None:
    shapes = roofline.peak_shapes(DIMS, rows=16)
    assert sorted(shapes.values()) == sorted(
        [(16, 4, 4), (16, 4, 8), (16, 8, 4), (roofline.HEAD_ROWS, 4, 10)]
    )


def _marker(folder: Path, wall: float) -> None:
    folder.mkdir(parents=True)
    (folder / "stage.json").write_text(json.dumps({"hash": "x", "files": {}, "wall_s": wall}))


def test_stage_times_prefer_the_summary_and_fall_back_to_markers(tmp_path: Path) -> None:
    _marker(tmp_path / "diff", 12.5)
    _marker(tmp_path / "lora" / "standard-s0", 40.0)
    summary = {"timings_s": {"lora/standard-s0": 30.0, "skipped": ["diff"]}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert roofline.stage_times(tmp_path) == {
        "lora/standard-s0": (30.0, "summary"),  # this invocation's time
        "diff": (12.5, "marker"),  # skipped now: the time it took when it ran
    }


def test_stage_times_refuse_a_folder_that_is_not_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(roofline.SumcircuitError, match="has no summary.json"):
        roofline.stage_times(tmp_path)


def test_table_rows_and_fractions() -> None:
    rows = [
        roofline.StageCount("diff", 4e12, 20.0, "summary", "float32"),
        roofline.StageCount("validate", 1e12, 10.0, "marker", "float32"),
    ]
    peaks = {"fp32": {"peak_gflops": 400.0}, "bf16": {"peak_gflops": 800.0}}
    lines = roofline.table(rows, peaks).splitlines()
    assert lines[0].startswith("| stage | ran in | GFLOP | seconds | GFLOP/s | % of fp32 peak")
    assert lines[2] == "| diff | float32 | 4,000 | 20.0 | 200.0 | 50.0 | 25.0 |"
    assert lines[3] == "| validate | float32 | 1,000 | 10.0* | 100.0 | 25.0 | 12.5 |"
